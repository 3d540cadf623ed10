using System.Collections.ObjectModel;
using System.Reflection;

namespace Egress.Tests;

/// <summary>
/// A guard on this suite itself. A test case whose generated name holds a control character that NUnit's name does not
/// write as an escape (ESC, SOH, DEL, a C1 control: all but NUL, <c>\a \b \t \n \v \f \r</c>) is dropped from discovery
/// by the test adapter without a word: it never runs, and the run still passes. Found when new cases with an ESC
/// sequence did not appear in the results, and two older ones of <c>PrintableTextTests</c> had never run; a review
/// found <c>char</c> arguments and <c>[Values]</c> dropped the same way. Such a case needs a <c>TestName</c>, or the test
/// builds the character itself.
/// </summary>
public sealed class TestCaseNamesTests
{
    [Test]
    public void NoTestCaseWithoutANameHasAnArgumentTheAdapterDrops()
    {
        var dropped = new List<string>();
        foreach (Type type in typeof(TestCaseNamesTests).Assembly.GetTypes())
        {
            foreach (MethodInfo method in type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                foreach (CustomAttributeData testCase in method.CustomAttributes.Where(a => a.AttributeType == typeof(TestCaseAttribute)))
                {
                    if (!testCase.NamedArguments.Any(named => named.MemberName == nameof(TestCaseAttribute.TestName)) && Values(testCase).Any(Dropped))
                    {
                        dropped.Add($"{type.Name}.{method.Name}({string.Join(", ", Values(testCase).Select(Shown))})");
                    }
                }

                foreach (ParameterInfo parameter in method.GetParameters())
                {
                    foreach (CustomAttributeData values in parameter.CustomAttributes.Where(a => a.AttributeType == typeof(ValuesAttribute)))
                    {
                        if (Values(values).Any(Dropped))
                        {
                            dropped.Add($"{type.Name}.{method.Name}, [Values] of {parameter.Name}");
                        }
                    }
                }
            }
        }

        Assert.That(dropped, Is.Empty, "these cases never run: give each a TestName, or build the character in the test");
    }

    [TestCase("a\u001bb", true, TestName = "ESC is dropped")]
    [TestCase("a\u0001b", true, TestName = "SOH is dropped")]
    [TestCase("a\u007fb", true, TestName = "DEL is dropped")]
    [TestCase("a\u0085b", true, TestName = "NEL (C1) is dropped")]
    [TestCase("a\0b\t\r\n\f\v\a\b", false, TestName = "NUL and the C escapes are kept")]
    [TestCase("bücher\u202e", false, TestName = "Other characters are kept")]
    public void TheRuleNamesTheCharactersTheAdapterDrops(string text, bool dropped) =>
        Assert.That(Dropped(text), Is.EqualTo(dropped));

    [Test]
    public void ACharArgumentIsCheckedToo() => Assert.That(Dropped('\u001b'), Is.True);

    /// <summary>The attribute's arguments, a params array's elements included.</summary>
    private static IEnumerable<object?> Values(CustomAttributeData attribute) =>
        attribute.ConstructorArguments.SelectMany(argument => argument.Value is ReadOnlyCollection<CustomAttributeTypedArgument> elements
            ? elements.Select(element => element.Value)
            : [argument.Value]);

    private static bool Dropped(object? value) => value switch
    {
        string text => text.Any(IsDropped),
        char c => IsDropped(c),
        _ => false,
    };

    private static bool IsDropped(char c) => char.IsControl(c) && c is not ('\0' or '\a' or '\b' or '\t' or '\n' or '\v' or '\f' or '\r');

    private static string Shown(object? argument) =>
        argument is string text ? '"' + Egress.Diagnostics.PrintableText.Escape(text) + '"' : argument?.ToString() ?? "null";
}
