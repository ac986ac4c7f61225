using EdgeLM.Cli.Commands;

namespace EdgeLM.Cli;

public static class Program
{
    public static IReadOnlyList<Command> Commands { get; } =
    [
        new DemoCommand(), new RunCommand(), new ChatCommand(), new TokenizeCommand(), new LogitsCommand(),
        new InfoCommand(), new SynthCommand(), new QuantizeCommand(), new ImatrixCommand(), new PruneCommand(),
        new MergeLoraCommand(), new CompareCommand(), new BenchCommand(), new EvalCommand(), new PerplexityCommand(),
        new ScoreCommand(), new PipelineCommand(), new ServeCommand(), new PullCommand(),
    ];

    public static int Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            if (cancel.IsCancellationRequested) return; // a second Ctrl+C ends the process
            e.Cancel = true;
            cancel.Cancel();
        };
        return Run(args, Console.Out, Console.Error, cancel.Token);
    }

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            stdout.WriteLine(GeneralHelp());
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] is "--version" or "version")
        {
            stdout.WriteLine("edgelm " + Version);
            return 0;
        }
        var command = Commands.FirstOrDefault(c => c.Name == args[0]);
        if (command == null)
        {
            stderr.WriteLine($"edgelm: unknown command '{args[0]}' (see 'edgelm --help')");
            return 2;
        }
        if (args.Skip(1).Any(a => a is "-h" or "--help"))
        {
            stdout.WriteLine(command.Help());
            return 0;
        }
        try
        {
            return command.Run(command.Parse(args[1..]), cancel);
        }
        catch (UsageException e)
        {
            stderr.WriteLine($"edgelm {command.Name}: {e.Message}");
            stderr.WriteLine($"usage: {command.Usage}   (edgelm {command.Name} --help for options)");
            return 2;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("edgelm: cancelled");
            return 130;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException
                                      or ArgumentException or NotSupportedException or InvalidOperationException
                                      or OutOfMemoryException or FormatException or OverflowException)
        {
            stderr.WriteLine($"edgelm: {OneLine(e.Message)}");
            return 1;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"edgelm: internal error ({e.GetType().Name}): {OneLine(e.Message)}");
            return 70;
        }
    }

    public static string Version => typeof(Program).Assembly.GetName().Version?.ToString(3) ?? "0";

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    private static string GeneralHelp()
    {
        var lines = new List<string>
        {
            $"edgelm {Version}: Qwen-family language models, small and fast on CPUs",
            "",
            "usage: edgelm <command> [options]     (edgelm <command> --help for its options)",
            "",
            "commands:",
        };
        lines.AddRange(Commands.Select(c => $"  {c.Name,-10} {c.Summary}"));
        return string.Join(Environment.NewLine, lines);
    }
}
