using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Egress.Policy;

namespace Egress.Tests.Api;

/// <summary>
/// The package's XML documentation as a consumer reads it: the docs of a public member link only to members a consumer
/// can see. A <c>cref</c> to an internal symbol compiles (the assembly can see it) but renders as a dead link or a bare
/// name in the consumer's IDE; a library-consumer trial found four (<c>AllowlistCache.Hold</c>,
/// <c>EgressMetrics.ForEnclave</c>, <c>ConfiguredComponents.PortLikeLastGroup</c>, <c>PrintableText.MaxQuoted</c>).
/// </summary>
public sealed partial class PublicDocumentationTests
{
    private static readonly Assembly Core = typeof(EgressPolicy).Assembly;

    [Test]
    public void PublicDocsLinkOnlyToPublicSymbols()
    {
        HashSet<string> visible = VisibleSymbols();
        XDocument docs = XDocument.Load(Path.ChangeExtension(Core.Location, ".xml"));
        var deadLinks = new List<string>();
        int publicMembers = 0;
        foreach (XElement member in docs.Descendants("member"))
        {
            string name = (string)member.Attribute("name")!;
            if (!visible.Contains(Key(name)))
            {
                continue;
            }

            publicMembers++;
            foreach (string cref in member.Descendants().Select(element => (string?)element.Attribute("cref")).OfType<string>())
            {
                if (cref.Length > 2 && cref[2..].StartsWith("Egress.", StringComparison.Ordinal) && !visible.Contains(Key(cref)))
                {
                    deadLinks.Add($"{name} -> {cref}");
                }
            }
        }

        Assert.Multiple(() =>
        {
            Assert.That(publicMembers, Is.GreaterThan(300), "the documentation file was read and public members were found in it");
            Assert.That(deadLinks, Is.Empty, "public docs that link to a symbol a consumer cannot see");
        });
    }

    /// <summary>Checks the check: a link to an internal member is caught, a link to a public one is not.</summary>
    [Test]
    public void TheCheckTellsInternalFromPublicSymbols()
    {
        HashSet<string> visible = VisibleSymbols();

        Assert.Multiple(() =>
        {
            Assert.That(visible, Does.Contain(Key("M:Egress.Policy.EgressPolicy.Create(System.Boolean,System.Collections.Generic.IEnumerable{System.String},Egress.Policy.AllowlistCache)")));
            Assert.That(visible, Does.Contain(Key("F:Egress.Policy.LearnOutcome.Learned")));
            Assert.That(visible, Does.Contain(Key("T:Egress.Tunnel.TunnelEndpoint")));
            Assert.That(visible, Does.Contain(Key("M:Egress.Tunnel.TunnelEndpoint.Equals(Egress.Tunnel.TunnelEndpoint)")));
            Assert.That(visible, Does.Not.Contain(Key("M:Egress.Policy.AllowlistCache.Hold(System.Net.IPAddress,System.String,System.String[],Egress.Policy.AddressHold@)")));
            Assert.That(visible, Does.Not.Contain(Key("T:Egress.Gateway.ParentAddresses")));
            Assert.That(visible, Does.Not.Contain(Key("F:Egress.Diagnostics.PrintableText.MaxQuoted")));
        });
    }

    /// <summary>Every type and member a consumer sees (public, or protected in an unsealed public type), as
    /// <see cref="Key"/>s.</summary>
    private static HashSet<string> VisibleSymbols()
    {
        const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var visible = new HashSet<string>(StringComparer.Ordinal);
        foreach (Type type in Core.GetExportedTypes())
        {
            string typeName = type.FullName!.Replace('+', '.');
            visible.Add("T:" + typeName);
            foreach (MemberInfo member in type.GetMembers(Declared).Where(IsVisible))
            {
                string prefix = member.MemberType switch
                {
                    MemberTypes.Method or MemberTypes.Constructor => "M:",
                    MemberTypes.Property => "P:",
                    MemberTypes.Field => "F:",
                    MemberTypes.Event => "E:",
                    _ => "",
                };
                if (prefix.Length > 0)
                {
                    string parameters = member is MethodBase method ? $"/{method.GetParameters().Length}" : "";
                    visible.Add($"{prefix}{typeName}.{member.Name.Replace('.', '#')}{parameters}");
                }
            }
        }

        return visible;
    }

    private static bool IsVisible(MemberInfo member) => member switch
    {
        MethodBase method => method.IsPublic || method.IsFamily || method.IsFamilyOrAssembly,
        FieldInfo field => field.IsPublic || field.IsFamily || field.IsFamilyOrAssembly,
        PropertyInfo property => property.GetAccessors(nonPublic: true).Any(IsVisible),
        EventInfo @event => @event.AddMethod is { } add && IsVisible(add),
        _ => false,
    };

    /// <summary>A documentation id with a method's parameter list reduced to its length (<c>M:T.Create/3</c>) and without
    /// its generic arity: overloads with as many parameters count as one symbol (close enough: no public method here has
    /// an internal overload of the same length that docs link to).</summary>
    private static string Key(string id)
    {
        int open = id.IndexOf('(');
        string name = MethodArity().Replace(open < 0 ? id : id[..open], "");
        if (!id.StartsWith("M:", StringComparison.Ordinal))
        {
            return name;
        }

        int count = 0, depth = 0;
        if (open >= 0 && id.Length > open + 2)
        {
            count = 1;
            foreach (char c in id.AsSpan(open + 1))
            {
                depth += c is '{' or '[' ? 1 : c is '}' or ']' ? -1 : 0;
                count += c == ',' && depth == 0 ? 1 : 0;
            }
        }

        return $"{name}/{count}";
    }

    [GeneratedRegex("``[0-9]+$")]
    private static partial Regex MethodArity();
}
