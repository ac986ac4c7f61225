using EdgeLM.Inference;
using EdgeLM.Kernels;
using EdgeLM.Models;

namespace EdgeLM.Evaluation;

/// <summary>A scorer that takes several items at once; <see cref="Evaluator"/> hands it <see cref="ItemsPerBatch"/> at a time.</summary>
public interface IBatchLoglikelihoodScorer : ILoglikelihoodScorer
{
    int ItemsPerBatch { get; }
    /// <summary>Score(context, continuations) of every item, in order.</summary>
    Loglikelihood[][] ScoreBatch(IReadOnlyList<(string Context, IReadOnlyList<string> Continuations)> items);
}

/// <summary>
/// <see cref="ModelScorer"/>'s requests and log-likelihoods, bitwise, through a <see cref="BatchedSession"/>: the
/// contexts of several items prefill together (one sequence per context), each context's cache is copied into one
/// sequence per further continuation, and all continuations run in one forward pass per round with the logits of every
/// token. A row's logits do not depend on the rows it shares a pass with, and the log-probs are summed in the same
/// order, so the results equal the one-at-a-time scorer's; the gain is fewer, larger passes (every weight matrix is
/// streamed once per pass, and the matmuls run on more rows at once).
/// </summary>
public sealed class BatchedModelScorer : IBatchLoglikelihoodScorer, IDisposable
{
    public const int DefaultItemsPerBatch = 8;
    public const int DefaultMaxSequences = 32;
    public const int DefaultMaxTokensPerStep = 256;
    /// <summary>KV caches are allocated (and cleared) whole, so the sequence count shrinks as long items grow them.</summary>
    public const long DefaultKvBudgetBytes = 512L << 20;
    private const int MinSequenceContext = 128;

    private readonly ModelConfig _config;
    private readonly ModelWeights _weights;
    private readonly WorkerPool _pool;
    private readonly Func<string, int[]> _encode;
    private readonly int _prefixTokenId, _maxLength, _maxSequences, _maxTokensPerStep, _vocab;
    private readonly long _kvBudgetBytes;
    private readonly float[] _logits;
    private readonly RowLogSoftmax _rowSoftmax;
    private readonly Job?[] _rowOwners;
    private BatchedSession? _batch;
    private bool _disposed;

    /// <param name="maxLength">lm-eval's max_length: longer requests are cut from the left (the single-sequence
    /// scorer's session context).</param>
    /// <param name="threads">0: Environment.ProcessorCount.</param>
    public BatchedModelScorer(ModelConfig config, ModelWeights weights, Func<string, int[]> encode, int prefixTokenId, int maxLength,
        int threads = 0, int itemsPerBatch = DefaultItemsPerBatch, int maxSequences = DefaultMaxSequences,
        int maxTokensPerStep = DefaultMaxTokensPerStep, long kvBudgetBytes = DefaultKvBudgetBytes)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(encode);
        if (maxLength < 1 || maxLength > config.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(maxLength), $"max length {maxLength} is not in 1..{config.ContextLength} (the model's context)");
        if (itemsPerBatch < 1) throw new ArgumentOutOfRangeException(nameof(itemsPerBatch), $"items per batch {itemsPerBatch} must be positive");
        if (maxSequences < 1) throw new ArgumentOutOfRangeException(nameof(maxSequences), $"sequences {maxSequences} must be positive");
        if (maxTokensPerStep < 1) throw new ArgumentOutOfRangeException(nameof(maxTokensPerStep), $"tokens per step {maxTokensPerStep} must be positive");
        _config = config;
        _weights = weights;
        _encode = encode;
        _prefixTokenId = prefixTokenId;
        _maxLength = maxLength;
        ItemsPerBatch = itemsPerBatch;
        _maxSequences = maxSequences;
        _maxTokensPerStep = maxTokensPerStep;
        _kvBudgetBytes = kvBudgetBytes;
        _vocab = config.VocabSize;
        _logits = new float[checked((long)maxTokensPerStep * _vocab)];
        _rowSoftmax = new RowLogSoftmax(_logits, _vocab, maxTokensPerStep);
        _rowOwners = new Job?[maxTokensPerStep];
        _pool = new WorkerPool(threads);
    }

    public int ItemsPerBatch { get; }
    /// <summary>Tokens run through the model so far (context once per item, continuations but their last token).</summary>
    public long TokensProcessed { get; private set; }
    /// <summary>Forward passes run so far.</summary>
    public long Steps { get; private set; }

    public Loglikelihood[] Score(string context, IReadOnlyList<string> continuations) => ScoreBatch([(context, continuations)])[0];

    public Loglikelihood[][] ScoreBatch(IReadOnlyList<(string Context, IReadOnlyList<string> Continuations)> items)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(items);
        var results = new Loglikelihood[items.Count][];
        var units = new List<Unit>();
        for (int i = 0; i < items.Count; i++)
        {
            results[i] = new Loglikelihood[items[i].Continuations.Count];
            AddUnits(units, i, items[i].Context, items[i].Continuations);
        }
        // Groups whose continuations all get a sequence at once; a unit wider than the batch runs in rounds.
        int capacity = SequencesFor(units.Count == 0 ? 1 : units.Max(u => u.Need));
        for (int start = 0; start < units.Count;)
        {
            int end = start + 1, width = units[start].Width;
            while (end < units.Count && width + units[end].Width <= capacity) width += units[end++].Width;
            RunGroup(units.GetRange(start, end - start));
            start = end;
        }
        foreach (var u in units)
            for (int c = 0; c < u.Continuations.Length; c++)
                results[u.Item][u.Choices[c]] = new Loglikelihood(u.Sums[c], u.Greedy[c]);
        return results;
    }

    /// <summary>ModelScorer's split: one unit per item when the choices share the context ids and fit, else one
    /// left-cut unit per choice.</summary>
    private void AddUnits(List<Unit> units, int item, string context, IReadOnlyList<string> continuations)
    {
        var pairs = continuations.Select(c => RequestEncoding.EncodePair(_encode, context, c, _prefixTokenId)).ToArray();
        foreach (var p in pairs)
        {
            if (p.Continuation.Length == 0) throw new ArgumentException("a continuation encodes to no tokens");
            if (p.Continuation.Length > _maxLength)
                throw new ArgumentException($"a continuation of {p.Continuation.Length} tokens exceeds the context of {_maxLength}");
        }
        if (pairs.Length == 0) return;
        bool shared = pairs.All(p => p.Context.AsSpan().SequenceEqual(pairs[0].Context));
        bool fits = pairs.All(p => p.Context.Length + p.Continuation.Length - 1 <= _maxLength);
        if (shared && fits)
        {
            units.Add(new Unit(item, pairs[0].Context, pairs.Select(p => p.Continuation).ToArray(), Enumerable.Range(0, pairs.Length).ToArray()));
            return;
        }
        for (int i = 0; i < pairs.Length; i++)
        {
            var p = pairs[i];
            int overflow = p.Context.Length + p.Continuation.Length - 1 - _maxLength;
            units.Add(new Unit(item, overflow > 0 ? p.Context[overflow..] : p.Context, [p.Continuation], [i]));
        }
    }

    /// <summary>The batch sized for sequences of <paramref name="need"/> tokens; returns how many sequences it holds.</summary>
    private int SequencesFor(int need)
    {
        if (_batch is { } current && current.ContextLength >= need) return current.MaxSequences;
        int length = MinSequenceContext;
        while (length < need) length *= 2;
        length = Math.Min(length, _maxLength);
        long perSequence = 2L * _config.LayerCount * length * _config.KvDim * sizeof(float);
        int sequences = (int)Math.Clamp(_kvBudgetBytes / perSequence, 1, _maxSequences);
        _batch?.Dispose();
        _batch = null;
        _batch = new BatchedSession(_config, _weights, sequences, length, _pool, KvCacheType.F32, _maxTokensPerStep);
        return sequences;
    }

    private void RunGroup(List<Unit> group)
    {
        var batch = _batch!;
        try
        {
            // Contexts: ordinary steps, which chunk long prompts and hand back each sequence's last logits.
            foreach (var u in group)
            {
                u.Holder = batch.Add();
                u.Holder.Append(u.Context);
                TokensProcessed += u.Context.Length;
            }
            while (batch.PendingTokens > 0)
            {
                batch.Step();
                Steps++;
                foreach (var u in group)
                    if (u.Holder!.HasLogits) u.ScoreFirstTokens(u.Holder.Logits);
            }
            RunContinuations(batch, group);
        }
        finally
        {
            foreach (var s in batch.Sequences.ToArray()) batch.Remove(s);
        }
    }

    /// <summary>Rounds of one <see cref="BatchedSession.StepAll"/> each: jobs in progress go on, new jobs start on the
    /// unit's holder when it is idle, else on a fresh sequence forked from it, while sequences and rows last.</summary>
    private void RunContinuations(BatchedSession batch, List<Unit> group)
    {
        var pending = new Queue<Job>();
        foreach (var u in group)
            for (int c = 0; c < u.Continuations.Length; c++)
                if (u.Continuations[c].Length > 1) pending.Enqueue(new Job(u, c));
        var running = new List<Job>();
        var waiting = new List<Job>();
        var logitRows = new int[batch.MaxSequences];
        while (pending.Count > 0 || running.Count > 0)
        {
            int budget = batch.MaxTokensPerStep;
            foreach (var job in running) budget -= Feed(job, budget);
            waiting.Clear();
            while (pending.Count > 0 && budget > 0)
            {
                var job = pending.Dequeue();
                var unit = job.Unit;
                if (!unit.HolderBusy)
                {
                    unit.HolderBusy = true;
                    job.Sequence = unit.Holder;
                    job.Sequence!.Truncate(unit.Context.Length);
                }
                else if (batch.Sequences.Count < batch.MaxSequences)
                {
                    job.Sequence = batch.Add();
                    job.Sequence.CopyPrefixFrom(unit.Holder!, unit.Context.Length);
                }
                else
                {
                    waiting.Add(job);
                    continue;
                }
                running.Add(job);
                budget -= Feed(job, budget);
            }
            foreach (var job in waiting) pending.Enqueue(job);
            if (running.Count == 0) throw new InvalidOperationException("no continuation could start: the batch has no free sequence");

            var sequences = batch.Sequences;
            Array.Clear(logitRows);
            foreach (var job in running) logitRows[IndexOf(sequences, job.Sequence!)] = job.Sequence!.PendingCount;
            batch.StepAll(logitRows.AsSpan(0, sequences.Count), _logits);
            Steps++;

            // The log-softmax of each row (an exp per vocabulary entry) runs on the pool; the sums stay in token order.
            int offset = 0;
            for (int i = 0; i < sequences.Count; i++)
            {
                if (logitRows[i] == 0) continue;
                var job = running.Find(j => ReferenceEquals(j.Sequence, sequences[i]))!;
                for (int r = 0; r < logitRows[i]; r++) _rowSoftmax.Tokens[offset + r] = job.Unit.Continuations[job.Choice][job.Scored + 1 + r];
                _rowOwners[offset] = job;
                offset += logitRows[i];
            }
            _pool.Run(_rowSoftmax, offset);
            for (int row = 0; row < offset;)
            {
                var job = _rowOwners[row]!;
                int rows = job.Queued - job.Scored;
                job.Add(_rowSoftmax.LogProbs.AsSpan(row, rows), _rowSoftmax.IsArgmax.AsSpan(row, rows));
                row += rows;
            }
            TokensProcessed += offset;
            foreach (var job in running)
            {
                if (!job.Done) continue;
                if (ReferenceEquals(job.Sequence, job.Unit.Holder)) job.Unit.HolderBusy = false;
                else batch.Remove(job.Sequence!);
            }
            running.RemoveAll(j => j.Done);
        }
    }

    private static int IndexOf(IReadOnlyList<BatchSequence> sequences, BatchSequence sequence)
    {
        for (int i = 0; i < sequences.Count; i++)
            if (ReferenceEquals(sequences[i], sequence)) return i;
        throw new InvalidOperationException("a running continuation lost its sequence");
    }

    /// <summary>Queues up to <paramref name="budget"/> of the job's next tokens; returns how many.</summary>
    private static int Feed(Job job, int budget)
    {
        int fed = job.Unit.Continuations[job.Choice].Length - 1;
        int take = Math.Min(fed - job.Queued, budget);
        if (take <= 0) return 0;
        job.Sequence!.Append(job.Unit.Continuations[job.Choice].AsSpan(job.Queued, take));
        job.Queued += take;
        return take;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _batch?.Dispose();
        _pool.Dispose();
    }

    /// <summary>One context and the continuations scored after it (choices: their indexes in the item).</summary>
    private sealed class Unit(int item, int[] context, int[][] continuations, int[] choices)
    {
        public readonly int Item = item;
        public readonly int[] Context = context;
        public readonly int[][] Continuations = continuations;
        public readonly int[] Choices = choices;
        public readonly double[] Sums = new double[continuations.Length];
        public readonly bool[] Greedy = new bool[continuations.Length];
        public BatchSequence? Holder;
        public bool HolderBusy;
        /// <summary>Tokens of the longest sequence this unit runs.</summary>
        public int Need => Context.Length + Continuations.Max(c => c.Length) - 1;
        /// <summary>Sequences to run every continuation at once.</summary>
        public int Width => Math.Max(1, Continuations.Count(c => c.Length > 1));

        public void ScoreFirstTokens(ReadOnlySpan<float> contextLogits)
        {
            for (int c = 0; c < Continuations.Length; c++)
                (Sums[c], Greedy[c]) = LogSoftmax.Of(contextLogits, Continuations[c][0]);
        }
    }

    /// <summary>One continuation in progress: tokens queued so far and scored so far (in order, as the sum must be).</summary>
    private sealed class Job(Unit unit, int choice)
    {
        public readonly Unit Unit = unit;
        public readonly int Choice = choice;
        public BatchSequence? Sequence;
        public int Queued, Scored;
        public bool Done => Scored == Unit.Continuations[Choice].Length - 1;

        /// <summary>Adds the log-probs of the next tokens, in order (token j's from the logits of token j - 1).</summary>
        public void Add(ReadOnlySpan<double> logProbs, ReadOnlySpan<bool> isArgmax)
        {
            for (int r = 0; r < logProbs.Length; r++)
            {
                Unit.Sums[Choice] += logProbs[r];
                Unit.Greedy[Choice] &= isArgmax[r];
                Scored++;
            }
        }
    }

    /// <summary>LogSoftmax.Of(row r of the logits, Tokens[r]) for a range of rows.</summary>
    private sealed class RowLogSoftmax(float[] logits, int vocab, int maxRows) : IRangeJob
    {
        public readonly int[] Tokens = new int[maxRows];
        public readonly double[] LogProbs = new double[maxRows];
        public readonly bool[] IsArgmax = new bool[maxRows];

        public void Execute(int begin, int end, int worker)
        {
            for (int r = begin; r < end; r++)
                (LogProbs[r], IsArgmax[r]) = LogSoftmax.Of(logits.AsSpan(r * vocab, vocab), Tokens[r]);
        }
    }
}
