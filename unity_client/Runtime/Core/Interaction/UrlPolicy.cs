using System;
using System.Collections.Generic;

namespace Omokage.Client
{
    /// <summary>
    /// Which URLs from the server the app may open (<c>decided.item.url</c>): only <c>http</c>/<c>https</c>, no user
    /// info (<c>https://bank.example@evil.example/</c>), and, when <see cref="AllowedHosts"/> is not empty, only those
    /// hosts. An entry <c>shop.example</c> allows that host; <c>*.shop.example</c> (or <c>.shop.example</c>) allows it and
    /// its subdomains. The server is not trusted to pick what leaves the app, least of all over plaintext <c>ws://</c>.
    /// </summary>
    public sealed class UrlPolicy
    {
        readonly List<string> _hosts = new List<string>();

        public UrlPolicy() { }

        public UrlPolicy(IEnumerable<string> allowedHosts)
        {
            if (allowedHosts == null) return;
            foreach (string h in allowedHosts)
                if (!string.IsNullOrEmpty(h) && h.Trim().Length > 0) _hosts.Add(h.Trim().ToLowerInvariant());
        }

        /// <summary>Hosts that may be opened (empty: any host).</summary>
        public IList<string> AllowedHosts { get { return _hosts; } }

        /// <summary>Whether the app may open <paramref name="url"/>; <paramref name="reason"/> says why not.</summary>
        public bool IsAllowed(string url, out string reason)
        {
            Uri uri;
            if (string.IsNullOrEmpty(url) || !Uri.TryCreate(url, UriKind.Absolute, out uri))
            {
                reason = "not an absolute URL";
                return false;
            }
            if (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            {
                reason = "scheme " + uri.Scheme + " is not http or https";
                return false;
            }
            if (!string.IsNullOrEmpty(uri.UserInfo))
            {
                reason = "the URL carries user info";
                return false;
            }
            if (_hosts.Count > 0 && !HostAllowed(uri.IdnHost.ToLowerInvariant()))
            {
                reason = "host " + uri.Host + " is not in the allowed hosts";
                return false;
            }
            reason = null;
            return true;
        }

        bool HostAllowed(string host)
        {
            foreach (string entry in _hosts)
            {
                string suffix = entry.StartsWith("*.", StringComparison.Ordinal) ? entry.Substring(1)
                              : entry.StartsWith(".", StringComparison.Ordinal) ? entry : null;
                if (suffix == null)
                {
                    if (host == entry) return true;
                }
                else if (host == suffix.Substring(1) || host.EndsWith(suffix, StringComparison.Ordinal))
                {
                    return true;
                }
            }
            return false;
        }

        /// <summary>localhost, 127.0.0.0/8 or ::1.</summary>
        public static bool IsLoopbackHost(string host)
        {
            if (string.IsNullOrEmpty(host)) return false;
            host = host.Trim('[', ']').ToLowerInvariant();
            if (host == "localhost" || host.EndsWith(".localhost", StringComparison.Ordinal)) return true;
            System.Net.IPAddress address;
            return System.Net.IPAddress.TryParse(host, out address) && System.Net.IPAddress.IsLoopback(address);
        }

        /// <summary>A <c>ws://</c> URL to another machine: the token and every message cross the network unencrypted.</summary>
        public static bool IsPlaintextToRemote(Uri serverUri)
        {
            return serverUri != null && serverUri.Scheme == "ws" && !IsLoopbackHost(serverUri.Host);
        }
    }

    /// <summary>
    /// The confirm step before a URL leaves the app: <see cref="Request"/> checks it against the <see cref="UrlPolicy"/>
    /// and holds it as <see cref="Pending"/> (the app shows a dialog); only <see cref="Confirm"/> opens it.
    /// </summary>
    public sealed class OpenUrlGate
    {
        readonly Action<string> _open;

        /// <param name="open">What opening means (Unity: Application.OpenURL).</param>
        public OpenUrlGate(UrlPolicy policy, Action<string> open)
        {
            if (open == null) throw new ArgumentNullException("open");
            Policy = policy ?? new UrlPolicy();
            _open = open;
        }

        public UrlPolicy Policy { get; set; }

        /// <summary>The URL waiting for the user's answer (null when none).</summary>
        public string Pending { get; private set; }

        /// <summary>Holds <paramref name="url"/> for confirmation; false (nothing pending) when the policy refuses it.</summary>
        public bool Request(string url, out string reason)
        {
            Pending = null;
            if (!Policy.IsAllowed(url, out reason)) return false;
            Pending = url;
            return true;
        }

        /// <summary>The user said yes: opens the pending URL (checked again); false when nothing was pending.</summary>
        public bool Confirm()
        {
            string url = Pending;
            Pending = null;
            string reason;
            if (url == null || !Policy.IsAllowed(url, out reason)) return false;
            _open(url);
            return true;
        }

        /// <summary>The user said no: forgets the pending URL.</summary>
        public void Cancel() { Pending = null; }
    }
}
