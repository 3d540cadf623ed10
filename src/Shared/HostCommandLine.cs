using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using Microsoft.Extensions.Logging;

namespace Egress.Hosting;

/// <summary>
/// The command line of both hosts, on System.CommandLine: the options they share (each verb adds only those it
/// uses, so an option a verb would ignore is an error there), <c>--help</c> headed by <see cref="HostVersion.Text"/>,
/// <c>--version</c> printing that line alone, and one error line per problem (<c>error: ...</c>, exit code
/// <see cref="HostRuntime.UsageError"/>).
/// </summary>
internal static class HostCommandLine
{
    /// <summary>Creates <c>--config PATH</c>: the enclave.toml to read (default ./enclave.toml).</summary>
    public static Option<string?> Config(string description) => new("--config") { Description = description, HelpName = "PATH" };

    /// <summary>Creates <c>--tunnel ENDPOINT</c>, kept as text: the run parses it with <c>TunnelEndpoint.Parse</c> (it overrides the file, whose value is then not read).</summary>
    public static Option<string?> Tunnel(string description) => new("--tunnel") { Description = description, HelpName = "ENDPOINT" };

    /// <summary>Creates <c>--log-level LEVEL</c>: a <see cref="LogLevel"/> by name (case-insensitive), Information by default.</summary>
    public static Option<LogLevel> LogLevel() => new("--log-level")
    {
        Description = HostRuntime.LogLevelNames.Replace(", Critical", " or Critical", StringComparison.Ordinal),
        HelpName = "LEVEL",
        DefaultValueFactory = _ => Microsoft.Extensions.Logging.LogLevel.Information,
        CustomParser = result =>
        {
            string text = result.Tokens[0].Value;
            if (HostRuntime.TryParseLogLevel(text, out var level))
            {
                return level;
            }

            result.AddError($"--log-level '{text}' is not one of {HostRuntime.LogLevelNames}");
            return default;
        },
    };

    /// <summary>Creates <c>--log-format text|json</c>; its value is <c>text</c> (the default) or <c>json</c>.</summary>
    /// <remarks>A string, not a bool: System.CommandLine gives a bool option a value only when the word reads as a boolean.</remarks>
    public static Option<string> LogFormat() => new("--log-format")
    {
        Description = "text (default): one line per event, \"2025-01-31T12:00:00.000Z info: Category[id] message\"; "
            + "json: one JSON object per line (Timestamp, EventId, LogLevel, Category, Message, State)",
        HelpName = "text|json",
        DefaultValueFactory = _ => "text",
        CustomParser = result =>
        {
            string text = result.Tokens[0].Value;
            if (HostRuntime.TryParseLogFormat(text, out _))
            {
                return text;
            }

            result.AddError($"--log-format '{text}' is not text or json");
            return "text";
        },
    };

    /// <summary>Whether a <see cref="LogFormat"/> value asks for JSON.</summary>
    public static bool IsJson(string? logFormat) => HostRuntime.TryParseLogFormat(logFormat, out bool json) && json;

    /// <summary>
    /// Makes <paramref name="verb"/> refuse the options of its parent (the root's run options) written before the
    /// verb, e.g. <c>egress-enclave --log-level Debug rules</c>: the verb would otherwise accept and ignore them.
    /// </summary>
    public static void RefuseParentOptions(Command verb, params Option[] parentOptions)
    {
        verb.Validators.Add(result =>
        {
            foreach (Option option in parentOptions)
            {
                if (result.GetResult(option) is { Implicit: false })
                {
                    result.AddError($"{option.Name} does not apply to '{verb.Name}'");
                }
            }
        });
    }

    /// <summary>
    /// Parses <paramref name="args"/> against <paramref name="root"/> and runs the chosen verb's action. A parse error
    /// prints one <c>error: ...</c> line per problem to stderr and returns <see cref="HostRuntime.UsageError"/>;
    /// <c>--help</c> prints <see cref="HostVersion.Text"/>, <paramref name="title"/>, the generated help and, for the
    /// root, <paramref name="epilogue"/>; <c>--version</c> prints <see cref="HostVersion.Text"/>. Both return 0.
    /// </summary>
    public static async Task<int> RunAsync(RootCommand root, string title, string epilogue, string[] args)
    {
        foreach (Option option in root.Options)
        {
            switch (option)
            {
                case HelpOption help when help.Action is HelpAction generated:
                    help.Action = new HeadedHelpAction(generated, title, root, epilogue);
                    break;
                case VersionOption version:
                    version.Action = new VersionAction();
                    break;
            }
        }

        ParseResult result = root.Parse(args);
        if (result.Action is ParseErrorAction)
        {
            foreach (ParseError error in result.Errors)
            {
                await Console.Error.WriteLineAsync($"error: {error.Message}").ConfigureAwait(false);
            }

            return HostRuntime.UsageError;
        }

        // The hosts handle SIGTERM/SIGINT themselves (drain, then exit 0); exceptions stay unhandled as before.
        return await result.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false })
            .ConfigureAwait(false);
    }

    private sealed class HeadedHelpAction(HelpAction generated, string title, RootCommand root, string epilogue) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            TextWriter output = parseResult.InvocationConfiguration.Output;
            output.WriteLine(HostVersion.Text);
            output.WriteLine();
            output.WriteLine(title);
            output.WriteLine();
            generated.Invoke(parseResult);
            if (ReferenceEquals(parseResult.CommandResult.Command, root))
            {
                output.WriteLine(epilogue);
            }

            return 0;
        }
    }

    private sealed class VersionAction : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(HostVersion.Text);
            return 0;
        }
    }
}
