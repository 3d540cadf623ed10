using System.CommandLine;
using System.Net;

namespace Egress.Stress;

/// <summary>The options the commands share, each parsed (and rejected with a message) by System.CommandLine.</summary>
internal static class Options
{
    public static Option<IPEndPoint> EndPoint(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "IP:PORT",
        Required = true,
        CustomParser = result =>
        {
            string text = result.Tokens[0].Value;
            if (IPEndPoint.TryParse(text, out IPEndPoint? endPoint) && endPoint.Port != 0)
            {
                return endPoint;
            }

            result.AddError($"{name} '{text}': expected IP:PORT");
            return null;
        },
    };

    public static Option<int> Count(string name, string description, int defaultValue) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        Validators = { result => Positive(result, name) },
    };

    public static Option<double> Seconds() => new("--seconds")
    {
        Description = "how long to run, in seconds",
        Required = true,
        Validators =
        {
            result =>
            {
                if (result.GetValueOrDefault<double>() <= 0)
                {
                    result.AddError("--seconds must be positive");
                }
            },
        },
    };

    public static Option<string> Text(string name, string description) => new(name) { Description = description, Required = true };

    private static void Positive(System.CommandLine.Parsing.OptionResult result, string name)
    {
        if (result.GetValueOrDefault<int>() <= 0)
        {
            result.AddError($"{name} must be a positive integer");
        }
    }
}
