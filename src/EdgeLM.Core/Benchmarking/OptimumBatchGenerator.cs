using EdgeLM.Inference;
using EdgeLM.Models;

namespace EdgeLM.Benchmarking;

/// <summary>
/// Greedy generation of a batch of sequences for the optimum-benchmark scenario: exactly the requested number of
/// new tokens for every sequence, never stopping at an end-of-generation token (optimum sets min_new_tokens =
/// max_new_tokens). The seam where a real multi-sequence batched forward pass plugs in.
/// </summary>
public interface IBatchGenerator : IDisposable
{
    /// <summary>How the sequences go through the model: <see cref="OptimumBatching.Batched"/> when together in one
    /// forward pass per step, <see cref="OptimumBatching.Sequential"/> when one after another.</summary>
    string Batching { get; }

    /// <summary>
    /// Generates <paramref name="newTokens"/> tokens after each prompt. <paramref name="onToken"/> is called with
    /// (sequence, step) as soon as that token is known; a batched engine reports every sequence of a step.
    /// </summary>
    void Generate(IReadOnlyList<int[]> prompts, int newTokens, Action<int, int>? onToken, CancellationToken cancel);
}

public static class OptimumBatching
{
    public const string Sequential = "sequential";
    public const string Batched = "batched";
}

/// <summary>Makes the generator for one loaded model; <see cref="SequentialBatchGenerator.Create"/> is the default.</summary>
public delegate IBatchGenerator BatchGeneratorFactory(LoadedModel model, OptimumOptions options);

/// <summary>
/// The fallback until the engine has a batched forward pass: one session, the sequences run one after another.
/// Latencies of batch size B are then about B times those of one sequence, and reports say "sequential".
/// </summary>
public sealed class SequentialBatchGenerator : IBatchGenerator
{
    private readonly InferenceSession _session;
    private readonly int _vocab;
    private readonly int[] _one = new int[1];

    public SequentialBatchGenerator(LoadedModel model, int contextLength, int threads, KvCacheType kvCacheType = KvCacheType.F32)
    {
        ArgumentNullException.ThrowIfNull(model);
        _vocab = model.Config.VocabSize;
        _session = new InferenceSession(model.Config, model.Weights, contextLength, threads, kvCacheType);
    }

    public static IBatchGenerator Create(LoadedModel model, OptimumOptions options) =>
        new SequentialBatchGenerator(model, options.SequenceLength + options.NewTokens, options.Threads, options.KvCacheType);

    public string Batching => OptimumBatching.Sequential;

    public void Generate(IReadOnlyList<int[]> prompts, int newTokens, Action<int, int>? onToken, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (newTokens < 1) throw new ArgumentOutOfRangeException(nameof(newTokens), $"new tokens {newTokens} must be at least 1");
        for (int s = 0; s < prompts.Count; s++)
        {
            var prompt = prompts[s];
            if (prompt.Length == 0) throw new ArgumentException($"prompt {s} is empty");
            if (prompt.Length + newTokens - 1 > _session.ContextLength)
                throw new ArgumentException($"prompt of {prompt.Length} tokens + {newTokens} new tokens exceeds the context of {_session.ContextLength}");
            cancel.ThrowIfCancellationRequested();
            _session.Reset();
            var logits = _session.Forward(prompt);
            for (int step = 0; ; step++)
            {
                int token = ArgMax(logits[.._vocab]);
                onToken?.Invoke(s, step);
                if (step + 1 == newTokens) break;
                cancel.ThrowIfCancellationRequested();
                _one[0] = token;
                logits = _session.Forward(_one);
            }
        }
    }

    internal static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i; // first maximum wins, as torch.argmax
        return best;
    }

    public void Dispose() => _session.Dispose();
}
