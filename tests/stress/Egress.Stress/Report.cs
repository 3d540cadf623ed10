using System.Globalization;
using System.Text;

namespace Egress.Stress;

/// <summary>
/// The one line of <c>key=value</c> pairs a command prints when it ends (read by tests/stress/run.sh with
/// <c>grep -o</c>): numbers in the invariant culture, text values without spaces.
/// </summary>
internal sealed class Report
{
    private readonly StringBuilder _line = new();

    public Report Add(string key, long value) => Append(key, value.ToString(CultureInfo.InvariantCulture));

    public Report Add(string key, double value) => Append(key, value.ToString("0.0##", CultureInfo.InvariantCulture));

    /// <summary>Adds a text value; spaces become underscores so the value stays one word.</summary>
    public Report Add(string key, string value) => Append(key, value.Replace(' ', '_'));

    public override string ToString() => _line.ToString();

    private Report Append(string key, string value)
    {
        if (_line.Length > 0)
        {
            _line.Append(' ');
        }

        _line.Append(key).Append('=').Append(value);
        return this;
    }
}
