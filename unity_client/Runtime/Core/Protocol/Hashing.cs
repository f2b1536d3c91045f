using System.Security.Cryptography;
using System.Text;

namespace Omokage.Client
{
    /// <summary>Content hashes as the protocol writes them: SHA-256, 64 lowercase hex characters.</summary>
    public static class Hashing
    {
        public static string Sha256Hex(byte[] data)
        {
            byte[] digest;
            using (var sha = SHA256.Create()) digest = sha.ComputeHash(data ?? new byte[0]);
            var sb = new StringBuilder(64);
            foreach (byte b in digest) sb.Append(b.ToString("x2"));
            return sb.ToString();
        }

        /// <summary>Whether a string looks like a texture hash (64 lowercase hex characters).</summary>
        public static bool IsHash(string s)
        {
            if (s == null || s.Length != 64) return false;
            foreach (char c in s)
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
            return true;
        }

        /// <summary>The image format from its first bytes: <c>png</c>, <c>jpeg</c>, or null.</summary>
        public static string SniffImageFormat(byte[] data)
        {
            if (data == null) return null;
            if (data.Length >= 8 && data[0] == 0x89 && data[1] == 0x50 && data[2] == 0x4e && data[3] == 0x47
                && data[4] == 0x0d && data[5] == 0x0a && data[6] == 0x1a && data[7] == 0x0a) return "png";
            if (data.Length >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return "jpeg";
            return null;
        }
    }
}
