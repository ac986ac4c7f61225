using EdgeLM.Inference;
using EdgeLM.Tokenization;

namespace EdgeLM.Cli.Commands;

internal sealed class RunCommand : Command
{
    public override string Name => "run";
    public override string Summary => "generate text from a prompt, streamed to standard output";
    public override string Usage => "edgelm run -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S] [-t THREADS]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--prompt", "-p", "TEXT", "the prompt"),
        new("--file", "-f", "FILE", "read the prompt from a file"),
        new("--n-predict", "-n", "N", "tokens to generate", "128"),
        new("--chat", null, null, "wrap the prompt as one user turn of the model's chat template"),
        new("--system", null, "TEXT", "system prompt (with --chat)"),
        new("--no-think", null, null, "with --chat, Qwen3: answer without thinking (enable_thinking=false)"),
        new("--no-special", null, null, "treat special-token text in the prompt as plain text"),
        new("--stats", null, null, "print token counts and speeds to standard error"),
        .. ModelOptions.Sampling,
        ModelOptions.Threads, ModelOptions.Context, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string prompt = a.Get("--prompt") ?? (a.Get("--file") is { } f ? File.ReadAllText(f) : throw new UsageException("give a prompt with -p TEXT or -f FILE"));
        int n = a.Int("--n-predict", 128, 0);
        var sampling = ModelOptions.SamplingFrom(a);
        using var model = ModelOptions.Load(a);
        var tokenizer = ModelOptions.LoadTokenizer(model, a);
        if (a.Flag("--chat"))
        {
            var messages = new List<ChatMessage>();
            if (a.Get("--system") is { } sys) messages.Add(new ChatMessage("system", sys));
            messages.Add(new ChatMessage("user", prompt));
            prompt = ChatFormat.Render(tokenizer, messages, addGenerationPrompt: true, enableThinking: !a.Flag("--no-think"));
        }
        else if (a.Flag("--no-think")) throw new UsageException("--no-think needs --chat");
        var ids = tokenizer.Encode(prompt, parseSpecial: !a.Flag("--no-special"));
        if (tokenizer.AddBos && tokenizer.BosId is int bos) ids = [bos, .. ids];
        using var session = ModelOptions.CreateSession(model, a, ids.Length + n);
        var generator = new Generator(session, tokenizer);
        var options = new GenerationOptions { MaxNewTokens = n, Sampling = sampling, StopStrings = a.GetAll("--stop") };

        var stdout = Console.Out;
        var result = generator.Generate(ids, options, piece => { stdout.Write(piece); stdout.Flush(); }, cancel);
        stdout.WriteLine();
        if (a.Flag("--stats"))
            Console.Error.WriteLine(StatsLine(result));
        return result.Finish == FinishReason.Cancelled ? 130 : 0;
    }

    internal static string StatsLine(GenerationResult r) =>
        $"prompt: {r.PromptTokens} tokens, {r.PrefillTokensPerSecond:F1} tokens/s | generated: {r.GeneratedTokens} tokens, " +
        $"{r.DecodeTokensPerSecond:F1} tokens/s | stop: {r.Finish}";
}
