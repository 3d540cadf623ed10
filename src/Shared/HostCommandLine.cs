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
    public static Option<string?> Config(string description)
    {
        var option = new Option<string?>("--config") { Description = description, HelpName = "PATH" };

        // An empty path (--config "", a variable that was not set) reached File.ReadAllText and ended the process
        // with an unhandled ArgumentException.
        option.Validators.Add(result =>
        {
            if (result.Tokens is [{ Value: "" }, ..])
            {
                result.AddError("--config needs a path (PATH), not an empty string");
            }
        });
        return option;
    }

    /// <summary>
    /// Creates an on/off option (<c>--check-config</c>, <c>--apply</c>): present or absent, never followed by a value.
    /// System.CommandLine's bool option takes an optional <c>true</c>/<c>false</c>, so <c>--check-config false</c>
    /// started the host instead of checking; here the word after a flag is the command's, and a stray one is an error.
    /// </summary>
    public static Option<bool> Flag(string name, string description) => new(name)
    {
        Description = description,
        Arity = ArgumentArity.Zero,
    };

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
                    // `egress-enclave --log-level Debug run`: run has the option too, after its name.
                    result.AddError(verb.Options.Any(own => own.Name == option.Name)
                        ? $"{option.Name} goes after '{verb.Name}' (its options follow it: {verb.Name} {option.Name} ...)"
                        : $"{option.Name} does not apply to '{verb.Name}'");
                }
            }
        });
    }

    /// <summary>
    /// Makes <paramref name="argument"/> refuse a word that looks like an option, with the message
    /// <see cref="ErrorMessages"/> gives an unknown option: System.CommandLine gives a word that no option of the verb
    /// matches to the verb's argument, so <c>report-to-allowlist --config x</c> would read a log named "--config".
    /// An argument with a <c>CustomParser</c> calls <see cref="DescribeOptionLike"/> from it instead.
    /// </summary>
    public static void RefuseOptionLikeValues(Argument argument)
    {
        argument.Validators.Add(result =>
        {
            if (DescribeOptionLike(result) is { } problem)
            {
                result.AddError(problem);
            }
        });
    }

    /// <summary>The error for the first word of <paramref name="result"/> that looks like an option; null when none does.</summary>
    public static string? DescribeOptionLike(ArgumentResult result)
    {
        if (result.Parent is not CommandResult { Command: var command })
        {
            return null;
        }

        foreach (Token token in result.Tokens)
        {
            if (IsOptionLike(token.Value))
            {
                return DescribeUnknownOption(command, token.Value, out _);
            }
        }

        return null;
    }

    /// <summary>
    /// Parses <paramref name="args"/> against <paramref name="root"/> and runs the chosen verb's action. A parse error
    /// prints one <c>error: ...</c> line per problem to stderr (see <see cref="ErrorMessages"/>) and returns
    /// <see cref="HostRuntime.UsageError"/>; <c>--help</c> prints <see cref="HostVersion.Text"/>, <paramref name="title"/>,
    /// the generated help and the command's text in <paramref name="epilogues"/> (examples and exit codes), if it has
    /// one, and wins over anything else on the line (<c>--version --help</c> and <c>--help --version</c> alike); <c>--version</c>
    /// prints <see cref="HostVersion.Text"/>. Both return 0. <c>--version</c> with anything else but <c>--help</c>
    /// (<c>--version --bogus</c>) is a parse error like any other.
    /// </summary>
    public static async Task<int> RunAsync(RootCommand root, string title, IReadOnlyDictionary<Command, string> epilogues, string[] args)
    {
        HeadedHelpAction? helpAction = null;
        foreach (Option option in root.Options)
        {
            switch (option)
            {
                case HelpOption help when help.Action is HelpAction generated:
                    help.Action = helpAction = new HeadedHelpAction(generated, title, epilogues);
                    break;
                case VersionOption version:
                    version.Action = new VersionAction();
                    break;
            }
        }

        ParseResult result = root.Parse(args);
        // --help wins wherever it stands: System.CommandLine runs the last of --help and --version, so "--version --help"
        // printed the help and "--help --version" an error.
        if (helpAction is not null && result.Action is not HeadedHelpAction && HelpGiven(result))
        {
            return helpAction.Invoke(result);
        }

        // Any error that the chosen action does not clear (help does; ParseErrorAction and the version action do not).
        if (result.Errors.Count > 0 && result.Action is not { ClearsParseErrors: true })
        {
            foreach (string message in ErrorMessages(result))
            {
                await Console.Error.WriteLineAsync($"error: {message}").ConfigureAwait(false);
            }

            return HostRuntime.UsageError;
        }

        // The hosts handle SIGTERM/SIGINT themselves (drain, then exit 0); exceptions stay unhandled as before.
        return await result.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false })
            .ConfigureAwait(false);
    }

    /// <summary>
    /// The message of each error in <paramref name="result"/>, with System.CommandLine's "Unrecognized command or
    /// argument '--x'." for a word that looks like an option made specific: an option the command line has elsewhere
    /// "does not apply" to the command (the words <see cref="RefuseParentOptions"/> uses when it is written before the
    /// verb), and any other is an unknown option, named with the closest option the command takes and where its help
    /// is. The word after such an option, when the option takes a value, is its value and is not reported again. Any
    /// other word no symbol took is, before a verb, a mistyped verb (named with the closest one; the words after it are
    /// its own, not reported), and after one, an argument the verb has no place for.
    /// </summary>
    private static IEnumerable<string> ErrorMessages(ParseResult result) => Messages(result).Distinct();

    private static IEnumerable<string> Messages(ParseResult result)
    {
        Command command = result.CommandResult.Command;
        var ours = new List<(string Generated, string? Message)>();
        int searchFrom = 0;
        int valueAt = -1;
        int unmatchedAt = -1;
        bool unknownCommand = false;
        foreach (string word in result.UnmatchedTokens)
        {
            int at = IndexOf(result.Tokens, word, searchFrom);
            searchFrom = at + 1;
            bool afterTakenOptionLike = at > 0 && at - 1 != unmatchedAt && IsOptionLikeArgument(result.Tokens[at - 1]);
            unmatchedAt = at;
            if (IsOptionLike(word))
            {
                ours.Add((Unrecognized(word), DescribeUnknownOption(command, word, out bool takesValue)));
                valueAt = takesValue ? at + 1 : -1;
            }
            else if (at >= 0 && (at == valueAt || afterTakenOptionLike))
            {
                // The option's value, or the word the verb's argument would have taken had the option-like word not
                // taken its place (check --version x: x is the target): the option-like word is the one error.
                ours.Add((Unrecognized(word), null));
            }
            else if (at > 0 && FlagNamed(command, result.Tokens[at - 1]) is { } flag)
            {
                ours.Add((Unrecognized(word), $"{flag.Name} takes no value ('{word}'): give it alone to turn it on, leave it out to keep it off"));
            }
            else if (command.Parents.OfType<Command>().FirstOrDefault() is null)
            {
                // The first such word is the verb that was meant; the words after it are that verb's, not more errors.
                ours.Add((Unrecognized(word), unknownCommand ? null : DescribeUnknownCommand(command, word)));
                unknownCommand = true;
            }
            else
            {
                ours.Add((Unrecognized(word), $"unexpected argument '{word}' for '{command.Name}' ({CommandLineOf(command)} --help lists what it takes)"));
            }
        }

        foreach (ParseError error in result.Errors)
        {
            int index = ours.FindIndex(entry => entry.Generated == error.Message);
            if (index < 0)
            {
                yield return Reworded(error);
                continue;
            }

            string? message = ours[index].Message;
            ours.RemoveAt(index);
            if (message is not null)
            {
                yield return message;
            }
        }

        // System.CommandLine's message for a word no symbol took (its resources are English: InvariantGlobalization).
        static string Unrecognized(string word) => $"Unrecognized command or argument '{word}'.";

        // System.CommandLine's messages for a missing or repeated value, in the words of the others: what is wrong and
        // where help is (before: "Required argument missing for command: 'check'.").
        static string Reworded(ParseError error)
        {
            SymbolResult? symbol = error.SymbolResult is ArgumentResult { Parent: OptionResult or CommandResult } argument ? argument.Parent : error.SymbolResult;
            bool missing = error.Message.StartsWith("Required argument missing", StringComparison.Ordinal);
            return symbol switch
            {
                OptionResult { Option: var option } when missing => $"{option.Name} needs a value ({option.HelpName ?? "VALUE"})",
                OptionResult { Option: var option } when error.Message.Contains("expects a single argument", StringComparison.Ordinal) =>
                    $"{option.Name} is given more than once; give it once",
                OptionResult { Option: VersionOption option } when error.Message.Contains("cannot be combined", StringComparison.Ordinal) =>
                    $"{option.Name} takes no other options or arguments; give it alone",
                CommandResult { Command: var command } when missing =>
                    $"'{command.Name}' needs {string.Join(" ", command.Arguments.Where(a => a.Arity.MinimumNumberOfValues > 0).Select(a => a.HelpName ?? a.Name))} ({CommandLineOf(command)} --help says what it takes)",
                _ => error.Message,
            };
        }

        static int IndexOf(IReadOnlyList<Token> tokens, string word, int start)
        {
            for (int i = Math.Max(start, 0); i < tokens.Count; i++)
            {
                if (tokens[i].Value == word)
                {
                    return i;
                }
            }

            return -1;
        }
    }

    private static bool IsOptionLike(string word) => word.Length > 1 && word[0] == '-';

    /// <summary>The on/off option (<see cref="Flag"/>) <paramref name="token"/> names at <paramref name="command"/>, if it does.</summary>
    private static Option? FlagNamed(Command command, Token token) =>
        token.Type == TokenType.Option
            ? OptionsAt(command).FirstOrDefault(o => o.Arity.MaximumNumberOfValues == 0 && o is not (HelpOption or VersionOption) && NamesOf(o).Contains(token.Value))
            : null;

    /// <summary>Whether <c>--help</c> (or an alias) is among the options the parse matched, at any verb.</summary>
    private static bool HelpGiven(ParseResult result)
    {
        for (SymbolResult? at = result.CommandResult; at is CommandResult command; at = command.Parent)
        {
            if (command.Children.OfType<OptionResult>().Any(option => option.Option is HelpOption && !option.Implicit))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Whether <paramref name="token"/> is an option-like word that a verb's argument took (an unknown option or another
    /// verb's, which the argument reports as such). The unmatched word after it is then no second error: it is that
    /// option's value (<c>check --confg x.toml</c>) or the argument it displaced (<c>check --version x</c>).
    /// </summary>
    private static bool IsOptionLikeArgument(Token token) => token.Type == TokenType.Argument && IsOptionLike(token.Value);

    /// <summary>
    /// A word the root command took as no verb: a verb named with the closest one (<c>chek</c>: did you mean
    /// 'check'?) where the host has verbs, and where it has none, that it takes options only.
    /// </summary>
    private static string DescribeUnknownCommand(Command root, string word)
    {
        if (root.Subcommands.Count == 0)
        {
            return $"unexpected argument '{word}': {root.Name} takes options only ({root.Name} --help lists them)";
        }

        string? closest = root.Subcommands.Where(verb => !verb.Hidden)
            .Select(verb => (verb.Name, Distance: Egress.Configuration.ConfigurationReader.EditDistance(word, verb.Name)))
            .Where(candidate => candidate.Distance <= 2)
            .OrderBy(candidate => candidate.Distance)
            .FirstOrDefault().Name;
        return $"unknown command '{word}'" + (closest is null ? string.Empty : $"; did you mean '{closest}'?")
            + $" ({root.Name} --help lists the commands)";
    }

    private static string DescribeUnknownOption(Command command, string word, out bool takesValue)
    {
        Command root = RootOf(command);
        int end = word.IndexOfAny(['=', ':']);
        string name = end > 0 ? word[..end] : word;
        Option[] here = [.. OptionsAt(command)];
        Option[] elsewhere = [.. Commands(root).SelectMany(c => c.Options).Distinct().Where(o => !here.Contains(o) && !o.Hidden && NamesOf(o).Contains(name))];
        if (elsewhere.Length > 0)
        {
            takesValue = end < 0 && elsewhere[0].Arity.MaximumNumberOfValues > 0;
            Command[] owners = [.. Commands(root).Where(c => c.Options.Any(elsewhere.Contains))];
            string[] others = owners.Any(owner => IsAncestor(owner, command)) ? [] : [.. owners.Select(owner => $"'{owner.Name}'")];
            return $"{name} does not apply to '{command.Name}'" + (others.Length == 0 ? string.Empty : $" (an option of {string.Join(" and ", others)})");
        }

        if (here.FirstOrDefault(o => NamesOf(o).Contains(name)) is { } own)
        {
            // Its own option, so it came after "--", where every word is an argument (the next one meant as its value).
            takesValue = end < 0 && own.Arity.MaximumNumberOfValues > 0;
            return $"'{name}' after '--' is an argument, not an option; options go before '--'";
        }

        Option[] shown = [.. here.Where(o => !o.Hidden)];
        var closest = shown.SelectMany(o => NamesOf(o).Where(n => n.StartsWith("--", StringComparison.Ordinal)).Select(n => (Option: o, Name: n, Distance: Egress.Configuration.ConfigurationReader.EditDistance(name, n))))
            .Where(candidate => candidate.Distance <= 2)
            .OrderBy(candidate => candidate.Distance)
            .FirstOrDefault();
        takesValue = end < 0 && closest.Option is { Arity.MaximumNumberOfValues: > 0 };
        string help = command == root ? $"{root.Name} --help lists the options" : $"{CommandLineOf(command)} --help lists its options";
        return $"unknown option '{name}'" + (command == root ? string.Empty : $" for '{command.Name}'")
            + (closest.Name is null ? string.Empty : $"; did you mean '{closest.Name}'?") + $" ({help})";
    }

    private static IEnumerable<string> NamesOf(Option option) => [option.Name, .. option.Aliases];

    /// <summary>The options <paramref name="command"/> takes: its own and the recursive ones of the commands above it.</summary>
    private static IEnumerable<Option> OptionsAt(Command command) =>
        command.Options.Concat(command.Parents.OfType<Command>().SelectMany(parent => OptionsAt(parent).Where(o => o.Recursive)));

    private static Command RootOf(Command command) => command.Parents.OfType<Command>().FirstOrDefault() is { } parent ? RootOf(parent) : command;

    private static IEnumerable<Command> Commands(Command command) => [command, .. command.Subcommands.SelectMany(Commands)];

    private static bool IsAncestor(Command candidate, Command command) =>
        command.Parents.OfType<Command>().Any(parent => parent == candidate || IsAncestor(candidate, parent));

    private static string CommandLineOf(Command command) =>
        command.Parents.OfType<Command>().FirstOrDefault() is { } parent ? $"{CommandLineOf(parent)} {command.Name}" : command.Name;

    private sealed class HeadedHelpAction(HelpAction generated, string title, IReadOnlyDictionary<Command, string> epilogues) : SynchronousCommandLineAction
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
            if (epilogues.TryGetValue(parseResult.CommandResult.Command, out string? epilogue))
            {
                output.WriteLine(epilogue);
            }

            return 0;
        }
    }

    /// <summary>
    /// Prints <see cref="HostVersion.Text"/>. It clears no parse errors (System.CommandLine's own version action does, so
    /// <c>--version --bogus</c> printed the version and exited 0): <see cref="RunAsync"/> reports them instead.
    /// </summary>
    private sealed class VersionAction : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => false;

        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(HostVersion.Text);
            return 0;
        }
    }
}
