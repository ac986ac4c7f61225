using EdgeLM.Compression.Comparison;
using EdgeLM.Evaluation;
using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Cli.Commands;

internal sealed class CompareCommand : Command
{
    public override string Name => "compare";
    public override string Summary => "quality cost of compression: KL divergence, top-1 agreement and perplexities of two models on a text";
    public override string Usage => "edgelm compare -m REFERENCE -m CANDIDATE -f TEXT [--ctx 512] [--chunks N] [--json]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--model", "-m", "MODEL", "GGUF file or Hugging Face folder; give it twice: the reference, then the candidate"),
        new("--file", "-f", "FILE", "the text (UTF-8)"),
        new("--ctx", "-c", "N", "window length in tokens; the second half of each window is scored", "512"),
        new("--chunks", null, "N", "score only the first N windows", "all"),
        new("--json", null, null, "print the result as JSON instead of a table"),
        ModelOptions.Threads,
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        var models = a.GetAll("--model");
        if (models.Count != 2) throw new UsageException($"give two models, -m REFERENCE -m CANDIDATE (got {models.Count})");
        string file = a.Require("--file");
        if (!File.Exists(file)) throw new FileNotFoundException($"text file not found: {file}", file);
        int maxChunks = a.Int("--chunks", -1, -1, int.MaxValue);
        int threads = ModelOptions.ThreadCount(a);

        using var reference = ModelLoader.Load(models[0]);
        using var candidate = ModelLoader.Load(models[1]);
        var refTokenizer = ModelTokenizers.Require(reference);
        var candTokenizer = ModelTokenizers.Load(candidate);
        if (candTokenizer != null) ModelComparison.CheckSameVocabulary(refTokenizer, candTokenizer);
        if (reference.Config.VocabSize != candidate.Config.VocabSize)
            throw new ArgumentException($"the models have different vocabularies ({reference.Config.VocabSize} and {candidate.Config.VocabSize} tokens); KL divergence needs the same tokenizer");
        int ctx = a.Int("--ctx", 512, 4, Math.Min(reference.Config.ContextLength, candidate.Config.ContextLength));

        int? bos = refTokenizer.AddBos ? refTokenizer.BosId : null;
        var tokens = refTokenizer.Encode(File.ReadAllText(file));
        if (bos is int b) tokens = [b, .. tokens];
        using var pool = new EdgeLM.Kernels.WorkerPool(threads);
        int batch = Math.Min(ctx, InferenceSession.DefaultBatchSize);
        using var refSession = new InferenceSession(reference.Config, reference.Weights, ctx, pool, batchSize: batch);
        using var candSession = new InferenceSession(candidate.Config, candidate.Weights, ctx, pool, batchSize: batch);
        var result = ModelComparison.Run(new SessionLanguageModel(refSession), new SessionLanguageModel(candSession), tokens, ctx, bos, maxChunks,
            (chunk, chunks) => Console.Error.Write($"\rcompare: chunk {chunk + 1}/{chunks}"), cancel);
        Console.Error.WriteLine();
        if (a.Flag("--json")) Console.Out.WriteLine(result.ToJson());
        else
        {
            Console.Out.WriteLine($"reference: {models[0]}");
            Console.Out.WriteLine($"candidate: {models[1]}");
            result.WriteTable(Console.Out);
        }
        return 0;
    }
}
