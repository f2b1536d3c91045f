// Lists every member of the UnityEngine stub (and the other engine stubs) that the package's compiled assemblies use
// (IL call/field/token operands, custom attributes, base types, signatures) and compares that list with
// tests/csharp/UnityStub/unity-api.txt, which says how real Unity declares each one. CI fails when
//   - the package uses a member the list does not have (check its real signature in Unity's docs, then add it to
//     the list and the stub), or
//   - the stub declares a used member differently from the list (static vs instance, return or parameter types,
//     type kind or base: the stub drifted from Unity), or
//   - the list has an entry nothing uses any more (remove it).
// Usage: mono StubSurface.exe [--write] LIST STUB.dll[,STUB.dll…] PACKAGE.dll…   (--write rewrites LIST for review)
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Reflection.Emit;
using System.Text;

public static class StubSurface
{
    static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null))
        .ToDictionary(o => o.Value);

    static HashSet<Assembly> _stubs;
    static readonly SortedSet<string> Used = new SortedSet<string>(StringComparer.Ordinal);
    static readonly Dictionary<string, SortedSet<string>> UsedBy = new Dictionary<string, SortedSet<string>>();

    public static int Main(string[] args)
    {
        bool write = args.Length > 0 && args[0] == "--write";
        if (write) args = args.Skip(1).ToArray();
        if (args.Length < 3)
        {
            Console.Error.WriteLine("usage: StubSurface.exe [--write] LIST STUB.dll[,STUB.dll...] PACKAGE.dll...");
            return 2;
        }
        string listPath = args[0];
        _stubs = new HashSet<Assembly>(args[1].Split(',').Select(p => Assembly.LoadFrom(Path.GetFullPath(p))));
        foreach (string path in args.Skip(2))
        {
            Assembly package = Assembly.LoadFrom(Path.GetFullPath(path));
            foreach (Type t in package.GetTypes()) ScanType(t, package.GetName().Name);
        }

        if (write)
        {
            var text = new StringBuilder();
            text.AppendLine("# Every engine member the package uses (components, sample, PlayMode tests), as real Unity 2021.3 declares it, checked");
            text.AppendLine("# against the Scripting API docs (and com.unity.inputsystem 1.x). .ci/csharp.sh runs StubSurface.exe, which fails when the");
            text.AppendLine("# package uses a member missing here or the stub declares one differently. To add one: look up its real declaration,");
            text.AppendLine("# declare it so in the stub, rerun with --write (see StubSurface.cs) and review the diff of this file.");
            text.AppendLine("# Lines: \"type NAME : KIND[, base BASE]\", \"ctor TYPE(PARAMS)\", \"method static|instance|virtual RETURN TYPE::NAME(PARAMS)\",");
            text.AppendLine("# \"field …\"; properties appear as their get_/set_ methods.");
            foreach (string line in Used) text.AppendLine(line);
            File.WriteAllText(listPath, text.ToString());
            Console.WriteLine("stub surface: wrote " + Used.Count + " entries to " + listPath);
            return 0;
        }

        var listed = new SortedSet<string>(File.ReadAllLines(listPath).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("#")), StringComparer.Ordinal);
        var missing = Used.Where(u => !listed.Contains(u)).ToList();
        var unused = listed.Where(l => !Used.Contains(l)).ToList();
        foreach (string m in missing)
            Console.Error.WriteLine("stub surface: used but not in " + Path.GetFileName(listPath) + " (or declared differently there): " + m +
                                    "   [" + string.Join(", ", UsedBy[m]) + "]");
        foreach (string u in unused)
            Console.Error.WriteLine("stub surface: listed but not used (or the stub declares it differently): " + u);
        Console.WriteLine("stub surface: the package uses " + Used.Count(u => u.StartsWith("type ")) + " engine types and " +
                          Used.Count(u => !u.StartsWith("type ")) + " members; " + (missing.Count + unused.Count) + " problem(s)");
        return missing.Count + unused.Count == 0 ? 0 : 1;
    }

    static void ScanType(Type t, string where)
    {
        string site = where + ":" + t.FullName;
        UseType(t.BaseType, site);
        foreach (Type i in t.GetInterfaces()) UseType(i, site);
        UseAttributes(t.GetCustomAttributesData(), site);
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (FieldInfo f in t.GetFields(all))
        {
            UseType(f.FieldType, site);
            UseAttributes(f.GetCustomAttributesData(), site);
        }
        foreach (PropertyInfo p in t.GetProperties(all)) UseType(p.PropertyType, site);
        foreach (EventInfo e in t.GetEvents(all)) UseType(e.EventHandlerType, site);
        foreach (MethodBase m in t.GetMethods(all).Cast<MethodBase>().Concat(t.GetConstructors(all)))
        {
            string msite = site + "." + m.Name;
            UseAttributes(m.GetCustomAttributesData(), msite);
            var mi = m as MethodInfo;
            if (mi != null) UseType(mi.ReturnType, msite);
            foreach (ParameterInfo p in m.GetParameters()) UseType(p.ParameterType, msite);
            MethodBody body = m.GetMethodBody();
            if (body == null) continue;
            foreach (LocalVariableInfo local in body.LocalVariables) UseType(local.LocalType, msite);
            ScanIl(m, body.GetILAsByteArray(), msite);
        }
    }

    static void ScanIl(MethodBase method, byte[] il, string site)
    {
        Type[] typeArgs = method.DeclaringType.IsGenericType ? method.DeclaringType.GetGenericArguments() : null;
        Type[] methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int pos = 0;
        while (pos < il.Length)
        {
            short value = il[pos++];
            if (value == 0xfe) value = (short)(0xfe00 | il[pos++]);
            OpCode op = OpCodesByValue[value];
            int size;
            switch (op.OperandType)
            {
                case OperandType.InlineNone: size = 0; break;
                case OperandType.ShortInlineBrTarget:
                case OperandType.ShortInlineI:
                case OperandType.ShortInlineVar: size = 1; break;
                case OperandType.InlineVar: size = 2; break;
                case OperandType.InlineI8:
                case OperandType.InlineR: size = 8; break;
                case OperandType.InlineSwitch: size = 4 + 4 * BitConverter.ToInt32(il, pos); break;
                case OperandType.InlineField:
                case OperandType.InlineMethod:
                case OperandType.InlineTok:
                case OperandType.InlineType:
                    size = 4;
                    UseToken(method.Module, BitConverter.ToInt32(il, pos), typeArgs, methodArgs, site);
                    break;
                default: size = 4; break;  // InlineBrTarget, InlineI, InlineSig, InlineString, ShortInlineR
            }
            pos += size;
        }
    }

    static void UseToken(Module module, int token, Type[] typeArgs, Type[] methodArgs, string site)
    {
        MemberInfo member;
        try { member = module.ResolveMember(token, typeArgs, methodArgs); }
        catch (Exception) { return; }
        var type = member as Type;
        if (type != null) { UseType(type, site); return; }
        UseMember(member, site);
    }

    static void UseAttributes(IEnumerable<CustomAttributeData> attributes, string site)
    {
        foreach (CustomAttributeData a in attributes) UseMember(a.Constructor, site);
    }

    static void UseMember(MemberInfo member, string site)
    {
        Type declaring = member.DeclaringType;
        if (declaring == null) return;
        var method = member as MethodBase;
        if (method != null)
        {
            var mi = method as MethodInfo;
            if (mi != null)
            {
                UseType(mi.ReturnType, site);
                if (mi.IsGenericMethod && !mi.IsGenericMethodDefinition)
                {
                    foreach (Type a in mi.GetGenericArguments()) UseType(a, site);
                }
            }
            foreach (ParameterInfo p in method.GetParameters()) UseType(p.ParameterType, site);
        }
        UseType(declaring, site);
        if (!IsStub(declaring)) return;
        // the declaration itself (not a generic instance of it): what the stub says
        MemberInfo definition = declaring.Module.ResolveMember(member.MetadataToken);
        Add(Describe(definition), site);
    }

    static void UseType(Type t, string site)
    {
        if (t == null) return;
        if (t.HasElementType) { UseType(t.GetElementType(), site); return; }
        if (t.IsGenericParameter) return;
        if (t.IsGenericType && !t.IsGenericTypeDefinition)
        {
            foreach (Type a in t.GetGenericArguments()) UseType(a, site);
            t = t.GetGenericTypeDefinition();
        }
        if (!IsStub(t)) return;
        string entry = DescribeType(t);
        if (Used.Contains(entry)) { Add(entry, site); return; }
        Add(entry, site);
        UseType(t.BaseType, site);
        if (t.DeclaringType != null) UseType(t.DeclaringType, site);
    }

    static void Add(string entry, string site)
    {
        Used.Add(entry);
        SortedSet<string> sites;
        if (!UsedBy.TryGetValue(entry, out sites)) UsedBy[entry] = sites = new SortedSet<string>(StringComparer.Ordinal);
        if (sites.Count < 3) sites.Add(site);
    }

    static bool IsStub(Type t) { return t != null && _stubs.Contains(t.Assembly); }

    static string DescribeType(Type t)
    {
        string kind;
        if (t.IsEnum) kind = "enum";
        else if (t.IsInterface) kind = "interface";
        else if (t.IsValueType) kind = "struct";
        else if (typeof(Delegate).IsAssignableFrom(t)) kind = "delegate";
        else if (t.IsAbstract && t.IsSealed) kind = "static class";
        else kind = (t.IsAbstract ? "abstract " : t.IsSealed ? "sealed " : "") + "class";
        string text = "type " + Name(t) + " : " + kind;
        if (kind.EndsWith("class") && kind != "static class" && t.BaseType != typeof(object)) text += ", base " + Name(t.BaseType);
        return text;
    }

    static string Describe(MemberInfo member)
    {
        var ctor = member as ConstructorInfo;
        if (ctor != null) return "ctor " + Name(ctor.DeclaringType) + "(" + Parameters(ctor) + ")";
        var method = member as MethodInfo;
        if (method != null)
        {
            string generic = method.IsGenericMethodDefinition ? "<" + string.Join(", ", method.GetGenericArguments().Select(Constraint)) + ">" : "";
            return "method " + (method.IsStatic ? "static " : method.IsVirtual ? "virtual " : "instance ") + Name(method.ReturnType) + " " +
                   Name(method.DeclaringType) + "::" + method.Name + generic + "(" + Parameters(method) + ")";
        }
        var field = member as FieldInfo;
        if (field != null)
            return "field " + (field.IsLiteral ? "const " : field.IsStatic ? "static " : "instance ") + (field.IsInitOnly ? "readonly " : "") +
                   Name(field.FieldType) + " " + Name(field.DeclaringType) + "::" + field.Name;
        return "member " + member;
    }

    static string Constraint(Type g)
    {
        var constraints = g.GetGenericParameterConstraints().Select(Name).ToList();
        return g.Name + (constraints.Count == 0 ? "" : " : " + string.Join(", ", constraints));
    }

    static string Parameters(MethodBase m)
    {
        return string.Join(", ", m.GetParameters().Select(p => (p.IsOut ? "out " : "") + Name(p.ParameterType) +
                                                               (p.HasDefaultValue ? " = " + (p.DefaultValue ?? "null") : "")));
    }

    static string Name(Type t)
    {
        if (t.IsByRef) return Name(t.GetElementType()) + "&";
        if (t.IsArray) return Name(t.GetElementType()) + "[]";
        if (t.IsGenericParameter) return t.Name;
        string name = t.IsNested ? Name(t.DeclaringType) + "+" + t.Name : t.Namespace + "." + t.Name;
        int tick = name.LastIndexOf('`');
        if (t.IsGenericType)
        {
            if (tick > 0) name = name.Substring(0, tick);
            name += "<" + string.Join(", ", t.GetGenericArguments().Select(Name)) + ">";
        }
        return name;
    }
}
