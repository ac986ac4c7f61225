using EdgeLM.Kernels;
using EdgeLM.Models;

namespace EdgeLM.Inference;

/// <summary>
/// Up to <see cref="MaxSequences"/> sequences decoded together (continuous batching): each <see cref="BatchSequence"/>
/// has its own KV cache and position; one <see cref="Step"/> runs the queued tokens of every sequence (one decode
/// token, or a chunk of a prompt) through one shared <see cref="ForwardPass"/>, so every weight matrix is streamed once
/// per step for the whole batch. Sequences join (<see cref="Add"/>) and leave (<see cref="Remove"/>) between steps; a
/// leaving sequence's cache goes back to a pool of caches for the next one to join. A sequence gets bitwise the
/// logits it would get alone in an <see cref="InferenceSession"/>, whoever it shares its steps with.
/// Steady-state steps allocate nothing. Not thread-safe: one call at a time.
/// </summary>
public sealed class BatchedSession : IDisposable
{
    public const int DefaultMaxTokensPerStep = InferenceSession.DefaultBatchSize;

    private readonly ModelConfig _config;
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;
    private readonly ForwardPass _pass;
    private readonly KvCacheType _kvCacheType;
    private readonly Slot?[] _slots;
    private readonly Stack<int> _freeSlots = new();
    private readonly List<BatchSequence> _active;
    private readonly int[] _stepTokens, _take, _headRows;
    private readonly float[] _logits;
    private readonly int _vocab;
    private int[]? _scoreRows;
    private long _step;
    private bool _disposed;

    public ModelConfig Config => _config;
    public int MaxSequences { get; }
    /// <summary>Tokens per sequence (prompt + generated); every sequence's cache holds this many.</summary>
    public int ContextLength { get; }
    /// <summary>Rows of one step, summed over the sequences; longer prompts continue in later steps.</summary>
    public int MaxTokensPerStep { get; }
    public int ThreadCount => _pool.ThreadCount;
    public KvCacheType KvCacheType => _kvCacheType;
    /// <summary>Sequences added and not removed, in the order they joined.</summary>
    public IReadOnlyList<BatchSequence> Sequences => _active;
    /// <summary>KV caches allocated so far (at most <see cref="MaxSequences"/>; reused by later sequences).</summary>
    public int CacheCount { get; private set; }
    /// <summary>Queued tokens that the next steps will run, over every sequence.</summary>
    public int PendingTokens
    {
        get
        {
            int total = 0;
            foreach (var s in _active) total += s.PendingCount;
            return total;
        }
    }

    public IActivationObserver? Observer { get => _pass.Observer; set => _pass.Observer = value; }
    public SessionProfile? Profile { get => _pass.Profile; set => _pass.Profile = value; }

    /// <param name="maxSequences">Sequences that can be in the batch at once.</param>
    /// <param name="contextLength">Per sequence; 0: min(config.ContextLength, 4096).</param>
    /// <param name="threads">0: Environment.ProcessorCount.</param>
    /// <param name="maxTokensPerStep">Rows of one step (at least <paramref name="maxSequences"/>).</param>
    public BatchedSession(ModelConfig config, ModelWeights weights, int maxSequences, int contextLength = 0, int threads = 0,
        KvCacheType kvCacheType = KvCacheType.F32, int maxTokensPerStep = DefaultMaxTokensPerStep)
        : this(config, weights, maxSequences, contextLength, new WorkerPool(threads), ownsPool: true, kvCacheType, maxTokensPerStep)
    {
    }

    /// <summary>A batch on a pool the caller owns (and keeps alive until this is disposed).</summary>
    public BatchedSession(ModelConfig config, ModelWeights weights, int maxSequences, int contextLength, WorkerPool sharedPool,
        KvCacheType kvCacheType = KvCacheType.F32, int maxTokensPerStep = DefaultMaxTokensPerStep)
        : this(config, weights, maxSequences, contextLength, sharedPool ?? throw new ArgumentNullException(nameof(sharedPool)), ownsPool: false, kvCacheType, maxTokensPerStep)
    {
    }

    private BatchedSession(ModelConfig config, ModelWeights weights, int maxSequences, int contextLength, WorkerPool pool, bool ownsPool,
        KvCacheType kvCacheType, int maxTokensPerStep)
    {
        try
        {
            _pool = pool;
            _ownsPool = ownsPool;
            contextLength = InferenceSession.CheckModel(config, weights, contextLength);
            if (maxSequences < 1 || maxSequences > 4096)
                throw new ArgumentOutOfRangeException(nameof(maxSequences), $"batch of {maxSequences} sequences must be between 1 and 4096");
            if (maxTokensPerStep < 1)
                throw new ArgumentOutOfRangeException(nameof(maxTokensPerStep), $"tokens per step {maxTokensPerStep} must be positive");
            if (kvCacheType is not (KvCacheType.F32 or KvCacheType.F16)) throw new ArgumentException($"unsupported kv cache type {kvCacheType}");
            _config = config;
            _kvCacheType = kvCacheType;
            MaxSequences = maxSequences;
            ContextLength = contextLength;
            // Every sequence gets a row in every step, and no step needs more rows than all caches can take.
            MaxTokensPerStep = (int)Math.Max(maxSequences, Math.Min(maxTokensPerStep, (long)maxSequences * contextLength));
            _vocab = config.VocabSize;
            _slots = new Slot?[maxSequences];
            for (int i = maxSequences - 1; i >= 0; i--) _freeSlots.Push(i);
            _active = new List<BatchSequence>(maxSequences);
            _stepTokens = new int[MaxTokensPerStep];
            _take = new int[maxSequences];
            _headRows = new int[maxSequences];
            _logits = new float[checked(maxSequences * _vocab)];
            _pass = new ForwardPass(config, weights, pool, contextLength, MaxTokensPerStep);
        }
        catch
        {
            if (ownsPool) pool.Dispose();
            throw;
        }
    }

    /// <summary>A new, empty sequence in the batch (position 0), on a free cache; throws when the batch is full.</summary>
    public BatchSequence Add()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_freeSlots.TryPop(out int index))
            throw new InvalidOperationException($"the batch is full ({MaxSequences} sequences)");
        var slot = _slots[index];
        if (slot is null)
        {
            try
            {
                slot = new Slot(index, new KvCache(_config.LayerCount, ContextLength, _config.KvDim, _kvCacheType), new int[ContextLength]);
            }
            catch
            {
                _freeSlots.Push(index);
                throw;
            }
            _slots[index] = slot;
            CacheCount++;
        }
        var sequence = new BatchSequence(this, slot);
        _active.Add(sequence);
        return sequence;
    }

    /// <summary>Takes the sequence out of the batch; its cache is kept for the next <see cref="Add"/>.</summary>
    public void Remove(BatchSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (sequence.Owner != this) throw new ArgumentException("the sequence belongs to another batch");
        if (sequence.IsRemoved) return;
        _active.Remove(sequence);
        _freeSlots.Push(sequence.Slot.Index);
        sequence.Detach();
    }

    /// <summary>Frees the caches of slots no sequence uses (after a burst of traffic, say).</summary>
    public void ReleaseIdleCaches()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (int index in _freeSlots)
        {
            if (_slots[index] is not { } slot) continue;
            slot.Cache.Dispose();
            _slots[index] = null;
            CacheCount--;
        }
    }

    /// <summary>
    /// Runs one forward pass over the queued tokens: every sequence with queued tokens gets at least one row, the rows
    /// left go to the longest queues (prompt chunks) in joining order, up to <see cref="MaxTokensPerStep"/> in all.
    /// A sequence whose queue empties gets its logits (<see cref="BatchSequence.HasLogits"/>), valid until the next
    /// step. Returns the tokens run (0: nothing was queued).
    /// </summary>
    public int Step()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _step++; // logits of the previous step are gone, even if this one fails
        int count = _active.Count, budget = MaxTokensPerStep;
        for (int i = 0; i < count; i++)
        {
            _take[i] = _active[i].PendingCount > 0 ? 1 : 0;
            budget -= _take[i];
        }
        for (int i = 0; i < count && budget > 0; i++)
        {
            if (_take[i] == 0) continue;
            int extra = Math.Min(_active[i].PendingCount - _take[i], budget);
            _take[i] += extra;
            budget -= extra;
        }
        int rows = MaxTokensPerStep - budget;
        if (rows == 0) return 0;

        long begin = _pass.StartProfile();
        int row = 0;
        for (int i = 0; i < count; i++)
        {
            if (_take[i] == 0) continue;
            var s = _active[i];
            s.PendingSpan[.._take[i]].CopyTo(_stepTokens.AsSpan(row));
            _pass.SetRows(row, _take[i], s.Slot.Cache, s.Position);
            row += _take[i];
        }
        // A sequence whose queue this step empties needs the logits of its last row; no other row's final state is
        // needed, so the pass runs the last layer's attention and feed-forward for those rows only.
        int heads = 0;
        row = 0;
        for (int i = 0; i < count; i++)
        {
            if (_take[i] == 0) continue;
            row += _take[i];
            if (_active[i].PendingCount == _take[i]) _headRows[heads++] = row - 1;
        }
        _pass.RunKeeping(_stepTokens.AsSpan(0, rows), _headRows.AsSpan(0, heads));

        heads = 0;
        for (int i = 0; i < count; i++)
        {
            if (_take[i] == 0) continue;
            var s = _active[i];
            s.Consume(_take[i]);
            if (s.PendingCount > 0) continue;
            s.SetLogits(_step, heads);
            heads++;
        }
        if (heads > 0) _pass.Logits(_headRows.AsSpan(0, heads), _logits);
        _pass.EndProfile(begin, rows);
        return rows;
    }

    /// <summary>
    /// Scoring: one forward pass over every queued token of every sequence (at most <see cref="MaxTokensPerStep"/> in
    /// all; nothing is left for a later step), writing the logits of the last <paramref name="logitRows"/>[i] queued
    /// tokens of <see cref="Sequences"/>[i] to <paramref name="logits"/>, sequence after sequence, one vocabulary-sized
    /// row per token. Every logits row is bitwise the one that token gets alone in an <see cref="InferenceSession"/>.
    /// <see cref="BatchSequence.Logits"/> is not set by this step. Returns the tokens run.
    /// </summary>
    public int StepAll(ReadOnlySpan<int> logitRows, Span<float> logits)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int count = _active.Count;
        if (logitRows.Length != count)
            throw new ArgumentException($"{logitRows.Length} logit row counts for {count} sequences");
        int rows = PendingTokens;
        if (rows > MaxTokensPerStep)
            throw new InvalidOperationException($"{rows} queued tokens exceed the {MaxTokensPerStep} of one step");
        long wanted = 0;
        for (int i = 0; i < count; i++)
        {
            if (logitRows[i] < 0 || logitRows[i] > _active[i].PendingCount)
                throw new ArgumentOutOfRangeException(nameof(logitRows), $"logits of {logitRows[i]} tokens asked of a sequence with {_active[i].PendingCount} queued");
            wanted += logitRows[i];
        }
        if (logits.Length < wanted * _vocab)
            throw new ArgumentException($"logits buffer of {logits.Length} floats, {wanted * _vocab} needed for {wanted} tokens x {_vocab}");
        _step++;
        if (rows == 0) return 0;

        long begin = _pass.StartProfile();
        int row = 0;
        for (int i = 0; i < count; i++)
        {
            var s = _active[i];
            int take = s.PendingCount;
            if (take == 0) continue;
            s.PendingSpan.CopyTo(_stepTokens.AsSpan(row));
            _pass.SetRows(row, take, s.Slot.Cache, s.Position);
            row += take;
        }
        _scoreRows ??= new int[MaxTokensPerStep];
        int selected = 0;
        row = 0;
        for (int i = 0; i < count; i++)
        {
            int take = _active[i].PendingCount;
            for (int j = take - logitRows[i]; j < take; j++) _scoreRows[selected++] = row + j;
            row += take;
        }
        // Only the scored rows' final states are needed: the last layer runs the rest for them alone.
        _pass.RunKeeping(_stepTokens.AsSpan(0, rows), _scoreRows.AsSpan(0, selected));
        for (int i = 0; i < count; i++) _active[i].Consume(_active[i].PendingCount);
        if (selected > 0) _pass.Logits(_scoreRows.AsSpan(0, selected), logits);
        _pass.EndProfile(begin, rows);
        return rows;
    }

    internal long CurrentStep => _step;

    internal ReadOnlySpan<float> LogitsAt(int index) => _logits.AsSpan(index * _vocab, _vocab);

    internal void CheckTokens(ReadOnlySpan<int> tokens) => InferenceSession.CheckTokenIds(tokens, _vocab);

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var s in _active) s.Detach();
        _active.Clear();
        foreach (var slot in _slots) slot?.Cache.Dispose();
        _pass.Dispose();
        if (_ownsPool) _pool.Dispose();
    }

    /// <summary>A cache and a token queue, kept across the sequences that use them in turn.</summary>
    internal sealed class Slot(int index, KvCache cache, int[] queue)
    {
        public readonly int Index = index;
        public readonly KvCache Cache = cache;
        public readonly int[] Queue = queue;
    }
}

/// <summary>
/// One sequence of a <see cref="BatchedSession"/>: its position in its own KV cache and the tokens queued for the next
/// steps. Queue tokens with <see cref="Append"/>, run <see cref="BatchedSession.Step"/>, and read <see cref="Logits"/>
/// once <see cref="HasLogits"/> says the last queued token has run.
/// </summary>
public sealed class BatchSequence
{
    private readonly BatchedSession _owner;
    private BatchedSession.Slot? _slot;
    private int _queueStart, _queueEnd;
    private long _logitsStep = -1;
    private int _logitsIndex;

    internal BatchSequence(BatchedSession owner, BatchedSession.Slot slot)
    {
        _owner = owner;
        _slot = slot;
    }

    internal BatchedSession Owner => _owner;
    internal BatchedSession.Slot Slot => _slot ?? throw new InvalidOperationException("the sequence was removed from its batch");

    public int ContextLength => _owner.ContextLength;
    /// <summary>Tokens in the cache; the next token runs at this position.</summary>
    public int Position { get; private set; }
    /// <summary>Tokens queued and not yet run.</summary>
    public int PendingCount => _queueEnd - _queueStart;
    public bool IsRemoved => _slot is null;
    /// <summary>True after the step that ran this sequence's last queued token, until the next step.</summary>
    public bool HasLogits => _slot is not null && _logitsStep == _owner.CurrentStep;

    /// <summary>Logits of the last token run (a batch-owned buffer, valid until the next step).</summary>
    public ReadOnlySpan<float> Logits =>
        HasLogits ? _owner.LogitsAt(_logitsIndex) : throw new InvalidOperationException("no logits: the last step did not finish this sequence's queued tokens");

    internal ReadOnlySpan<int> PendingSpan => Slot.Queue.AsSpan(_queueStart, PendingCount);

    /// <summary>Queues tokens for the next steps (a prompt, or one decode token).</summary>
    public void Append(ReadOnlySpan<int> tokens)
    {
        _owner.ThrowIfDisposed();
        var slot = Slot;
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to process");
        long after = (long)Position + PendingCount + tokens.Length;
        if (after > ContextLength)
            throw new ArgumentException(Position + PendingCount == 0
                ? $"prompt of {tokens.Length} tokens exceeds the context of {ContextLength}"
                : $"{tokens.Length} tokens after the {Position + PendingCount} of the sequence exceed the context of {ContextLength}");
        _owner.CheckTokens(tokens);
        if (PendingCount == 0) _queueStart = _queueEnd = 0;
        else if (_queueEnd + tokens.Length > slot.Queue.Length)
        {
            // Position + queued ≤ context = queue length, so moving the queue to the front always makes room.
            Array.Copy(slot.Queue, _queueStart, slot.Queue, 0, PendingCount);
            _queueEnd -= _queueStart;
            _queueStart = 0;
        }
        tokens.CopyTo(slot.Queue.AsSpan(_queueEnd));
        _queueEnd += tokens.Length;
    }

    /// <summary>
    /// Makes this sequence the first <paramref name="position"/> tokens of <paramref name="source"/> (a sequence of the
    /// same batch) by copying that part of its cache: a shared prompt runs once and forks. Nothing may be queued here.
    /// </summary>
    public void CopyPrefixFrom(BatchSequence source, int position)
    {
        ArgumentNullException.ThrowIfNull(source);
        _owner.ThrowIfDisposed();
        var slot = Slot;
        if (source.Owner != _owner) throw new ArgumentException("the source sequence belongs to another batch");
        if (PendingCount > 0) throw new InvalidOperationException("cannot copy into a sequence with queued tokens");
        if (position < 0 || position > source.Position)
            throw new ArgumentOutOfRangeException(nameof(position), $"cannot copy {position} tokens: the source holds {source.Position}");
        slot.Cache.CopyPrefixFrom(source.Slot.Cache, position);
        Position = position;
        _logitsStep = -1;
    }

    /// <summary>Drops the queued tokens that have not run yet.</summary>
    public void ClearPending() => _queueStart = _queueEnd = 0;

    /// <summary>Forgets every token.</summary>
    public void Reset() => Truncate(0);

    /// <summary>Rolls the cache back to its first <paramref name="position"/> tokens (nothing may be queued).</summary>
    public void Truncate(int position)
    {
        _ = Slot;
        if (PendingCount > 0) throw new InvalidOperationException("cannot truncate a sequence with queued tokens");
        if (position < 0 || position > Position)
            throw new ArgumentOutOfRangeException(nameof(position), $"cannot truncate to position {position}: the cache holds {Position} tokens");
        Position = position;
        _logitsStep = -1;
    }

    internal void Consume(int tokens)
    {
        _queueStart += tokens;
        Position += tokens;
    }

    internal void SetLogits(long step, int index)
    {
        _logitsStep = step;
        _logitsIndex = index;
    }

    internal void Detach()
    {
        _slot = null;
        _queueStart = _queueEnd = 0;
    }
}
