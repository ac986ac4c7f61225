using EdgeLM.Inference;

namespace EdgeLM.Cli.Commands;

internal sealed class ChatCommand : Command
{
    public override string Name => "chat";
    public override string Summary => "interactive chat with the model's chat template (/reset, /exit)";
    public override string Usage => "edgelm chat -m MODEL [--system TEXT] [--no-think] [-n N] [sampling options]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--system", null, "TEXT", "system prompt"),
        new("--n-predict", "-n", "N", "maximum tokens per reply", "512"),
        new("--stats", null, null, "print speeds after each reply"),
        new("--no-think", null, null, "Qwen3: answer without thinking (enable_thinking=false)"),
        .. ModelOptions.Sampling,
        ModelOptions.Threads, ModelOptions.Context, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        var sampling = ModelOptions.SamplingFrom(a);
        int n = a.Int("--n-predict", 512, 1);
        using var model = ModelOptions.Load(a);
        var tokenizer = ModelOptions.LoadTokenizer(model, a);
        using var session = ModelOptions.CreateSession(model, a);
        var generator = new Generator(session, tokenizer);
        var options = new GenerationOptions { MaxNewTokens = n, Sampling = sampling, StopStrings = a.GetAll("--stop") };
        string? system = a.Get("--system");
        bool think = !a.Flag("--no-think");
        var chat = new ChatSession(generator, tokenizer, system) { EnableThinking = think };
        bool interactive = !Console.IsInputRedirected;
        if (interactive) Console.Error.WriteLine($"chatting with {model.Config.Name} ({model.Config.Architecture}); /reset starts over, /exit or Ctrl+D quits");

        while (!cancel.IsCancellationRequested)
        {
            if (interactive) Console.Write("> ");
            string? line = Console.ReadLine();
            if (line == null || line.Trim() == "/exit") break;
            if (line.Trim().Length == 0) continue;
            if (line.Trim() == "/reset")
            {
                session.Reset();
                chat = new ChatSession(generator, tokenizer, system) { EnableThinking = think };
                continue;
            }
            try
            {
                var result = chat.Send(line, options, piece => { Console.Write(piece); Console.Out.Flush(); }, cancel);
                Console.WriteLine();
                if (a.Flag("--stats")) Console.Error.WriteLine(RunCommand.StatsLine(result));
            }
            catch (ArgumentException e) when (e.Message.Contains("context"))
            {
                Console.Error.WriteLine($"edgelm: {e.Message}; use /reset to start over or a larger --ctx");
            }
        }
        return 0;
    }
}
