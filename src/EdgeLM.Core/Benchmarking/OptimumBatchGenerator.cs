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

/// <summary>Makes the generator for one loaded model; <see cref="BatchGenerators.Create"/> is the default.</summary>
public delegate IBatchGenerator BatchGeneratorFactory(LoadedModel model, OptimumOptions options);

public static class BatchGenerators
{
    /// <summary>Batch size 1: one plain session (<see cref="SequentialBatchGenerator"/>); more: every sequence
    /// decoded together (<see cref="BatchedGenerator"/>).</summary>
    public static IBatchGenerator Create(LoadedModel model, OptimumOptions options) =>
        options.BatchSize > 1 ? BatchedGenerator.Create(model, options) : SequentialBatchGenerator.Create(model, options);
}

/// <summary>
/// optimum's batch_size > 1 as it means it: the B sequences are decoded together, one forward pass per step for all of
/// them (<see cref="BatchedSession"/>: weights streamed once per step, each sequence with its own KV cache). The
/// prompts are prefilled together too, in chunks of the batch's step size. Every sequence picks exactly the tokens it
/// would alone (bitwise the same logits).
/// </summary>
public sealed class BatchedGenerator : IBatchGenerator
{
    private readonly BatchedSession _batch;
    private readonly int _vocab;
    private readonly int[] _one = new int[1];
    private readonly List<BatchSequence> _sequences = [];
    private int[] _steps = [];

    public BatchedGenerator(LoadedModel model, int maxSequences, int contextLength, int threads, KvCacheType kvCacheType = KvCacheType.F32)
    {
        ArgumentNullException.ThrowIfNull(model);
        _vocab = model.Config.VocabSize;
        _batch = new BatchedSession(model.Config, model.Weights, maxSequences, contextLength, threads, kvCacheType);
    }

    public static IBatchGenerator Create(LoadedModel model, OptimumOptions options) =>
        new BatchedGenerator(model, options.BatchSize, options.SequenceLength + options.NewTokens, options.Threads, options.KvCacheType);

    public string Batching => OptimumBatching.Batched;

    /// <summary>The greedy tokens of the last <see cref="Generate"/>, per sequence (tests compare them with one
    /// sequence alone).</summary>
    internal List<int>[] LastTokens { get; private set; } = [];

    public void Generate(IReadOnlyList<int[]> prompts, int newTokens, Action<int, int>? onToken, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (newTokens < 1) throw new ArgumentOutOfRangeException(nameof(newTokens), $"new tokens {newTokens} must be at least 1");
        if (prompts.Count > _batch.MaxSequences) throw new ArgumentException($"{prompts.Count} prompts for a batch of {_batch.MaxSequences}");
        for (int s = 0; s < prompts.Count; s++)
        {
            if (prompts[s].Length == 0) throw new ArgumentException($"prompt {s} is empty");
            if (prompts[s].Length + newTokens - 1 > _batch.ContextLength)
                throw new ArgumentException($"prompt of {prompts[s].Length} tokens + {newTokens} new tokens exceeds the context of {_batch.ContextLength}");
        }
        if (LastTokens.Length != prompts.Count) LastTokens = prompts.Select(_ => new List<int>(newTokens)).ToArray();
        foreach (var list in LastTokens) list.Clear();
        if (_steps.Length != prompts.Count) _steps = new int[prompts.Count];
        Array.Clear(_steps);
        try
        {
            for (int s = 0; s < prompts.Count; s++)
            {
                _sequences.Add(_batch.Add());
                _sequences[s].Append(prompts[s]);
            }
            int finished = 0;
            while (finished < prompts.Count)
            {
                cancel.ThrowIfCancellationRequested();
                _batch.Step();
                for (int s = 0; s < prompts.Count; s++)
                {
                    var sequence = _sequences[s];
                    if (!sequence.HasLogits || _steps[s] == newTokens) continue;
                    int token = SequentialBatchGenerator.ArgMax(sequence.Logits[.._vocab]);
                    LastTokens[s].Add(token);
                    onToken?.Invoke(s, _steps[s]);
                    if (++_steps[s] == newTokens) { finished++; continue; }
                    _one[0] = token;
                    sequence.Append(_one);
                }
            }
        }
        finally
        {
            foreach (var sequence in _sequences) _batch.Remove(sequence);
            _sequences.Clear();
        }
    }

    public void Dispose() => _batch.Dispose();
}

/// <summary>
/// One session, the sequences run one after another: batch size 1, or a baseline for the batched generator.
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
