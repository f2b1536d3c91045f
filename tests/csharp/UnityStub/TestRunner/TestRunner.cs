// A compile-time stand-in for Unity's test framework (assembly UnityEngine.TestRunner), so .ci/csharp.sh can compile
// the package's PlayMode tests (Tests/Runtime); they run only in Unity's Test Runner. In Unity, UnityTestAttribute
// derives from NUnit 3 types that NUnit 2.6 lacks; here it is a plain attribute.
using System;
using System.Text.RegularExpressions;

namespace UnityEngine.TestTools
{
    [AttributeUsage(AttributeTargets.Method)]
    public class UnityTestAttribute : Attribute { }

    public static class LogAssert
    {
        public static void Expect(LogType type, Regex message) { }
        public static void NoUnexpectedReceived() { }
    }
}
