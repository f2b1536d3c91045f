using System;
using System.Collections.Generic;
using System.IO;
using System.Text.RegularExpressions;
using NUnit.Framework;
using Omokage.Client.MessagePack;

namespace Omokage.Client.Tests
{
    /// <summary>The package's manifest and layout: one version, the modules it uses, names that agree.</summary>
    [TestFixture]
    public class PackageTests
    {
        static string Root()
        {
            string root = PackagePaths.Root();
            Assert.IsNotNull(root, "the package folder (package.json) was not found");
            return root;
        }

        static MsgMap Json(params string[] path)
        {
            string file = Root();
            foreach (string part in path) file = Path.Combine(file, part);
            return (MsgMap)MiniJson.Parse(File.ReadAllText(file));
        }

        [Test]
        public void PackageJsonVersion_IsTheCSharpConstant()
        {
            Assert.AreEqual(Protocol.PackageVersion, Json("package.json").GetString("version"),
                            "package.json and Protocol.PackageVersion must say the same version");
            StringAssert.EndsWith("/" + Protocol.PackageVersion, Protocol.DefaultClientName);
            StringAssert.Contains("## [" + Protocol.PackageVersion + "]", File.ReadAllText(Path.Combine(Root(), "CHANGELOG.md")),
                                  "the CHANGELOG has a section for this version");
        }

        [Test]
        public void PackageJson_DeclaresModulesAndLinks()
        {
            var manifest = Json("package.json");
            var dependencies = manifest["dependencies"] as MsgMap;
            Assert.IsNotNull(dependencies, "dependencies");
            // Texture2D.LoadImage (ImageConversion), Physics.Raycast and colliders (Physics)
            foreach (string module in new[] { "com.unity.modules.imageconversion", "com.unity.modules.physics" })
                Assert.IsTrue(dependencies.ContainsKey(module), module);
            // the links are optional in UPM: none until the package has a public home, never a placeholder
            foreach (string link in new[] { "documentationUrl", "changelogUrl", "licensesUrl" })
            {
                if (!manifest.ContainsKey(link)) continue;
                StringAssert.StartsWith("https://", manifest.GetString(link), link);
                StringAssert.DoesNotContain("OWNER", manifest.GetString(link), link + " is a placeholder");
            }
            foreach (string file in new[] { "README.md", "CHANGELOG.md", "LICENSE.md" })
                Assert.IsTrue(File.Exists(Path.Combine(Root(), file)), file + " ships with the package (Package Manager shows it)");
            StringAssert.Contains("protocol v" + Protocol.Version + "." + Protocol.Minor, manifest.GetString("description"),
                                  "the description names the protocol version the client speaks");
        }

        [Test]
        public void Assemblies_NamespacesFollowTheAssemblyNames()
        {
            var runtime = Json("Runtime", "Omokage.Client.asmdef");
            Assert.AreEqual("Omokage.Client", runtime.GetString("name"));
            Assert.AreEqual("Omokage.Client.Components", runtime.GetString("rootNamespace"));
            CollectionAssert.Contains((List<object>)runtime["excludePlatforms"], "WebGL", "ClientWebSocket does not run on WebGL");
            var core = Json("Runtime", "Core", "Omokage.Client.Core.asmdef");
            CollectionAssert.Contains((List<object>)core["excludePlatforms"], "WebGL");
            CheckNamespaces(Path.Combine(Path.Combine(Root(), "Runtime"), "Components"), "Omokage.Client.Components");
            CheckNamespaces(Path.Combine(Path.Combine(Root(), "Runtime"), "Core"), "Omokage.Client");
        }

        static void CheckNamespaces(string dir, string expected)
        {
            var namespaceLine = new Regex(@"^namespace\s+([\w.]+)", RegexOptions.Multiline);
            int files = 0;
            foreach (string file in Directory.GetFiles(dir, "*.cs", SearchOption.AllDirectories))
            {
                files++;
                foreach (Match m in namespaceLine.Matches(File.ReadAllText(file)))
                {
                    string ns = m.Groups[1].Value;
                    Assert.IsTrue(ns == expected || ns.StartsWith(expected + ".", StringComparison.Ordinal),
                                  Path.GetFileName(file) + ": namespace " + ns + ", expected " + expected);
                }
            }
            Assert.That(files, Is.GreaterThan(0), dir);
        }

        [Test]
        public void TestAssemblies_AreWhatTheUnityTestRunnerExpects()
        {
            foreach (string kind in new[] { "Editor", "Runtime" })
            {
                var asmdef = Json("Tests", kind, "Omokage.Client.Tests." + kind + ".asmdef");
                Assert.AreEqual("Omokage.Client.Tests." + kind, asmdef.GetString("name"));
                CollectionAssert.Contains((List<object>)asmdef["defineConstraints"], "UNITY_INCLUDE_TESTS", kind);
                CollectionAssert.Contains((List<object>)asmdef["precompiledReferences"], "nunit.framework.dll", kind);
                CollectionAssert.Contains((List<object>)asmdef["references"], "UnityEngine.TestRunner", kind);
                CollectionAssert.Contains((List<object>)asmdef["optionalUnityReferences"], "TestAssemblies", kind);
                Assert.AreEqual(false, asmdef["autoReferenced"], kind + ": not referenced by players");
            }
            CollectionAssert.AreEqual(new object[] { "Editor" }, (List<object>)Json("Tests", "Editor", "Omokage.Client.Tests.Editor.asmdef")["includePlatforms"]);
        }
    }
}
