using System.Globalization;
using EdgeLM.Evaluation;
using EdgeLM.Inference;

namespace EdgeLM.Cli.Commands;

internal sealed class PerplexityCommand : Command
{
    public override string Name => "perplexity";
    public override string Summary => "perplexity of a text file, computed as llama.cpp's llama-perplexity computes it";
    public override string Usage => "edgelm perplexity -m MODEL -f FILE [--ctx 512] [--batch 512] [--chunks N] [-t THREADS]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model,
        new("--file", "-f", "FILE", "the text (UTF-8), e.g. wikitext-2-raw wiki.test.raw"),
        new("--ctx", "-c", "N", "window length in tokens; the second half of each window is scored", "512"),
        new("--batch", "-b", "N", "tokens per forward chunk", "512"),
        new("--chunks", null, "N", "score only the first N windows", "all"),
        ModelOptions.Threads, ModelOptions.Tokenizer,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string file = a.Require("--file");
        if (!File.Exists(file)) throw new FileNotFoundException($"text file not found: {file}", file);
        int batch = a.Int("--batch", 512, 1, 1 << 16);
        int maxChunks = a.Int("--chunks", -1, -1, int.MaxValue);
        string text = File.ReadAllText(file);
        using var model = ModelOptions.Load(a);
        int ctx = a.Int("--ctx", 512, 4, model.Config.ContextLength);
        var tokenizer = ModelOptions.LoadTokenizer(model, a);
        int? bos = tokenizer.AddBos ? tokenizer.BosId : null;
        var tokens = tokenizer.Encode(text);
        if (bos is int b) tokens = [b, .. tokens];
        Console.Error.WriteLine($"perplexity: tokenized {tokens.Length} tokens");
        using var session = new InferenceSession(model.Config, model.Weights, ctx, ModelOptions.ThreadCount(a), batchSize: Math.Min(batch, ctx));
        int chunks = tokens.Length / ctx;
        if (maxChunks > 0) chunks = Math.Min(chunks, maxChunks);
        var started = DateTime.UtcNow;
        Console.Error.WriteLine($"perplexity: calculating perplexity over {chunks} chunks, n_ctx={ctx}, batch_size={Math.Min(batch, ctx)}, n_seq=1");
        var result = Perplexity.Run(new SessionLanguageModel(session), tokens, ctx, bos, batch,
            (chunk, ppl) =>
            {
                if (chunk == 0)
                {
                    double s = (DateTime.UtcNow - started).TotalSeconds;
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"perplexity: {s:F2} seconds per pass - ETA {s * chunks / 60:F2} minutes"));
                }
                Console.Out.Write(string.Create(CultureInfo.InvariantCulture, $"[{chunk + 1}]{ppl:F4},"));
                Console.Out.Flush();
            }, maxChunks, cancel);
        Console.Out.WriteLine();
        Console.Out.WriteLine(Perplexity.FinalLine(result));
        return 0;
    }
}
