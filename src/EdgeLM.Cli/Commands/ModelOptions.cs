using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tokenization;

namespace EdgeLM.Cli.Commands;

/// <summary>Options shared by every command that loads a model, and the code that turns them into a session.</summary>
internal static class ModelOptions
{
    public static readonly OptionSpec Model = new("--model", "-m", "MODEL", "GGUF file or Hugging Face folder");
    public static readonly OptionSpec Threads = new("--threads", "-t", "N", "worker threads", "physical cores");
    public static readonly OptionSpec Context = new("--ctx", "-c", "N", "context length in tokens", "min(model, 4096)");
    public static readonly OptionSpec Tokenizer = new("--tokenizer", null, "FILE", "tokenizer.json to use instead of the model's own");

    public static readonly OptionSpec[] Sampling =
    [
        new("--temp", null, "T", "sampling temperature, 0 = greedy", "0.8"),
        new("--top-k", null, "K", "keep the K most likely tokens, 0 = off", "40"),
        new("--top-p", null, "P", "nucleus sampling threshold, 1 = off", "0.95"),
        new("--min-p", null, "P", "drop tokens below P x the top probability, 0 = off", "0.05"),
        new("--repeat-penalty", null, "R", "repetition penalty, 1 = off", "1.0"),
        new("--repeat-last-n", null, "N", "tokens the repetition penalty looks back at", "64"),
        new("--seed", "-s", "N", "random seed for reproducible sampling", "random"),
        new("--stop", null, "TEXT", "stop when this text is generated (repeatable)"),
    ];

    public static int ThreadCount(ParsedArgs a) => a.Int("--threads", EdgeLM.Benchmarking.CpuInfo.Current.PhysicalCores, 1, 1024);

    public static SamplingOptions SamplingFrom(ParsedArgs a)
    {
        var s = new SamplingOptions
        {
            Temperature = a.Float("--temp", 0.8f),
            TopK = a.Int("--top-k", 40, 0),
            TopP = a.Float("--top-p", 0.95f),
            MinP = a.Float("--min-p", 0.05f),
            RepetitionPenalty = a.Float("--repeat-penalty", 1.0f),
            RepetitionWindow = a.Int("--repeat-last-n", 64, 0),
            Seed = a.ULong("--seed"),
        };
        try { s.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return s;
    }

    public static LoadedModel Load(ParsedArgs a) => ModelLoader.Load(a.Require("--model"));

    public static InferenceSession CreateSession(LoadedModel model, ParsedArgs a, int minimumContext = 0)
    {
        int fallback = Math.Min(model.Config.ContextLength, Math.Max(4096, minimumContext));
        int ctx = a.Int("--ctx", fallback, 1, model.Config.ContextLength);
        return new InferenceSession(model.Config, model.Weights, ctx, ThreadCount(a));
    }

    public static BpeTokenizer LoadTokenizer(LoadedModel model, ParsedArgs a) => ModelTokenizers.Require(model, a.Get("--tokenizer"));
}
