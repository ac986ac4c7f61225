using EdgeLM.Compression.Rewriting;
using EdgeLM.Evaluation;
using EdgeLM.Inference;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Compression.Pruning;

public enum PruneMethod
{
    /// <summary>ShortGPT (Men et al. 2024): drop the blocks with the lowest block influence 1 − cos(input, output).</summary>
    ShortGpt,
    /// <summary>SLEB (Song et al. 2024): greedily drop the block whose removal raises calibration perplexity least.</summary>
    Sleb,
}

public sealed record BlockScore(int Block, double Score);

/// <summary>
/// One selection round. ShortGPT has a single round scoring every block by influence; SLEB has one round per removed
/// block, scoring each remaining original block by the calibration perplexity of the model without it.
/// </summary>
public sealed record PruneRound(IReadOnlyList<BlockScore> Scores, IReadOnlyList<int> Removed);

public sealed record PruneResult(PruneMethod Method, int LayerCount, IReadOnlyList<PruneRound> Rounds, double BaselinePerplexity)
{
    /// <summary>Original numbers of the removed blocks, ascending.</summary>
    public IReadOnlyList<int> Removed => Rounds.SelectMany(r => r.Removed).Order().ToArray();
}

public sealed record PruneOptions
{
    public required PruneMethod Method { get; init; }
    public required int RemoveCount { get; init; }
    /// <summary>Calibration windows are this long; each starts from an empty cache.</summary>
    public int Context { get; init; } = 512;
    public int Threads { get; init; }
    /// <summary>When set, the first token of every window is replaced by it (llama.cpp's perplexity convention).</summary>
    public int? BosId { get; init; }
}

/// <summary>Chooses blocks to remove from calibration tokens and writes the pruned model.</summary>
public static class LayerPruner
{
    public static PruneMethod ParseMethod(string name) => name.Trim().ToLowerInvariant() switch
    {
        "shortgpt" => PruneMethod.ShortGpt,
        "sleb" => PruneMethod.Sleb,
        _ => throw new ArgumentException($"unknown pruning method '{name}' (known: shortgpt, sleb)"),
    };

    public static PruneResult Select(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors, ReadOnlySpan<int> calibration,
        PruneOptions options, IProgress<string>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(options);
        if (options.RemoveCount < 1 || options.RemoveCount >= config.LayerCount)
            throw new ArgumentException($"--remove {options.RemoveCount}: the model has {config.LayerCount} blocks, remove between 1 and {config.LayerCount - 1}");
        int ctx = options.Context;
        if (ctx < 2 || ctx > config.ContextLength) throw new ArgumentException($"calibration context {ctx} is not in 2..{config.ContextLength}");
        if (calibration.Length < ctx)
            throw new ArgumentException($"the calibration text has {calibration.Length} tokens, fewer than one window of {ctx}; give more text or a smaller --ctx");
        int[][] windows = Windows(calibration, ctx, options.BosId);

        using var pool = new WorkerPool(options.Threads);
        var fullWeights = new ModelWeights(config, tensors);
        double baseline = CalibrationPerplexity(config, fullWeights, windows, pool, cancel);
        progress?.Report($"baseline calibration perplexity {baseline:F4} over {windows.Length} window(s) of {ctx} tokens");
        if (options.Method == PruneMethod.ShortGpt)
        {
            var influence = BlockInfluence(config, fullWeights, windows, pool, cancel);
            var scores = influence.Select((bi, block) => new BlockScore(block, bi)).ToArray();
            var removed = scores.OrderBy(s => s.Score).ThenBy(s => s.Block).Take(options.RemoveCount).Select(s => s.Block).Order().ToArray();
            return new PruneResult(PruneMethod.ShortGpt, config.LayerCount, [new PruneRound(scores, removed)], baseline);
        }

        var rounds = new List<PruneRound>();
        var gone = new List<int>();
        for (int round = 0; round < options.RemoveCount; round++)
        {
            var scores = new List<BlockScore>();
            for (int block = 0; block < config.LayerCount; block++)
            {
                if (gone.Contains(block)) continue;
                cancel.ThrowIfCancellationRequested();
                var (c, w) = LayerRemoval.View(config, tensors, [.. gone, block]);
                double ppl = CalibrationPerplexity(c, w, windows, pool, cancel);
                scores.Add(new BlockScore(block, ppl));
                progress?.Report($"round {round + 1}: without block {block} perplexity {ppl:F4}");
            }
            int best = scores.OrderBy(s => s.Score).ThenBy(s => s.Block).First().Block;
            gone.Add(best);
            rounds.Add(new PruneRound(scores, [best]));
        }
        return new PruneResult(PruneMethod.Sleb, config.LayerCount, rounds, baseline);
    }

    /// <summary>Non-overlapping windows of ctx tokens (a shorter tail is dropped).</summary>
    private static int[][] Windows(ReadOnlySpan<int> tokens, int ctx, int? bos)
    {
        var windows = new int[tokens.Length / ctx][];
        for (int i = 0; i < windows.Length; i++)
        {
            windows[i] = tokens.Slice(i * ctx, ctx).ToArray();
            if (bos is int b) windows[i][0] = b;
        }
        return windows;
    }

    /// <summary>ShortGPT's block influence: the mean over calibration tokens of 1 − cos(block input, block output).</summary>
    public static double[] BlockInfluence(ModelConfig config, ModelWeights weights, int[][] windows, WorkerPool pool, CancellationToken cancel = default)
    {
        var observer = new InfluenceObserver(config.LayerCount, config.HiddenSize);
        using var session = new InferenceSession(config, weights, windows[0].Length, pool) { Observer = observer };
        foreach (var w in windows)
        {
            cancel.ThrowIfCancellationRequested();
            session.Reset();
            session.Forward(w);
        }
        return observer.Influence();
    }

    /// <summary>Perplexity of every next-token prediction inside the windows (SLEB scores whole sequences).</summary>
    public static double CalibrationPerplexity(ModelConfig config, ModelWeights weights, int[][] windows, WorkerPool pool, CancellationToken cancel = default)
    {
        int ctx = windows[0].Length, vocab = config.VocabSize;
        // Logits are computed a piece at a time so a large vocabulary does not need ctx x vocab floats.
        int piece = Math.Max(1, Math.Min(ctx - 1, (1 << 22) / vocab));
        var logits = new float[(long)piece * vocab];
        using var session = new InferenceSession(config, weights, ctx, pool, batchSize: Math.Min(ctx, InferenceSession.DefaultBatchSize));
        double nll = 0;
        long count = 0;
        foreach (var w in windows)
        {
            cancel.ThrowIfCancellationRequested();
            session.Reset();
            for (int pos = 0; pos < ctx - 1; pos += piece)
            {
                int n = Math.Min(piece, ctx - 1 - pos);
                session.ForwardAll(w.AsSpan(pos, n), logits);
                for (int i = 0; i < n; i++) nll -= LogSoftmax.Of(logits.AsSpan(i * vocab, vocab), w[pos + i + 1]).LogProb;
                count += n;
            }
        }
        return Math.Exp(nll / count);
    }

    /// <summary>The pruned model's tensors, renamed, with the source bytes copied as they are.</summary>
    public static (ModelConfig Config, List<OutputTensor> Tensors) PrunedTensors(LoadedModel model, IReadOnlyCollection<int> removed)
    {
        var config = LayerRemoval.Config(model.Config, removed);
        int[] map = LayerRemoval.NewIndices(model.Config.LayerCount, removed);
        var tensors = new List<OutputTensor>();
        // Source order is kept (GGUF order for GGUF input), so the output reads like the input minus some blocks.
        foreach (var (name, t) in model.Tensors)
        {
            string? renamed = LayerRemoval.Rename(name, map);
            if (renamed != null) tensors.Add(OutputTensor.CopyOf(renamed, t));
        }
        return (config, tensors);
    }

    /// <summary>Writes the model without the removed blocks as GGUF (any tensor types) or a Hugging Face folder; returns a warning or null.</summary>
    public static string? Write(LoadedModel model, IReadOnlyCollection<int> removed, string output, bool folder)
    {
        var (config, tensors) = PrunedTensors(model, removed);
        if (folder) return ModelRewriter.WriteHuggingFace(output, model, config, tensors);
        ModelRewriter.WriteGguf(output, ModelRewriter.BuildMetadata(model, config), tensors);
        return null;
    }

    private sealed class InfluenceObserver(int layers, int width) : IActivationObserver
    {
        private readonly double[] _sum = new double[layers];
        private readonly long[] _count = new long[layers];
        private float[] _input = [];

        public void Observe(int layer, ActivationSite site, ReadOnlySpan<float> rows, int n, int w)
        {
            if (site == ActivationSite.BlockInput)
            {
                // The session updates the residual stream in place, so the block's input must be kept.
                if (_input.Length < rows.Length) _input = new float[rows.Length];
                rows.CopyTo(_input);
            }
            else if (site == ActivationSite.BlockOutput)
            {
                for (int i = 0; i < n; i++)
                {
                    var a = _input.AsSpan(i * width, width);
                    var b = rows.Slice(i * width, width);
                    double dot = 0, na = 0, nb = 0;
                    for (int j = 0; j < width; j++) { dot += (double)a[j] * b[j]; na += (double)a[j] * a[j]; nb += (double)b[j] * b[j]; }
                    double cos = na > 0 && nb > 0 ? dot / Math.Sqrt(na * nb) : 1;
                    _sum[layer] += 1 - cos;
                }
                _count[layer] += n;
            }
        }

        public double[] Influence() => _sum.Select((s, l) => _count[l] > 0 ? s / _count[l] : 0).ToArray();
    }
}
