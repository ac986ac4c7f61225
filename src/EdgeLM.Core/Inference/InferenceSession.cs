using EdgeLM.Kernels;
using EdgeLM.Models;

namespace EdgeLM.Inference;

/// <summary>
/// One growing sequence: owns its KV cache and position, and runs its tokens through a <see cref="ForwardPass"/>
/// (activation buffers sized once for a chunk of tokens; longer prompts run in chunks), the rope tables and the
/// worker threads. Steady-state calls allocate nothing. Not thread-safe: one call at a time.
/// <see cref="BatchedSession"/> runs several sequences through the same forward pass in one call.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    public const int DefaultMaxContext = 4096;
    public const int DefaultBatchSize = 512;

    private readonly ModelConfig _config;
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;
    private readonly KvCache _cache;
    private readonly ForwardPass _pass;
    private readonly float[] _logits;
    private readonly int[] _lastRow = new int[1];
    private readonly int[] _allRows;
    private readonly int _vocab;
    private bool _disposed;

    public ModelConfig Config => _config;
    public int ContextLength { get; }
    public int BatchSize { get; }
    public int ThreadCount => _pool.ThreadCount;
    public KvCacheType KvCacheType => _cache.Type;
    /// <summary>Tokens in the cache; the next token is at this position.</summary>
    public int Position { get; private set; }

    /// <summary>Optional calibration hook; null (the default) costs one branch per site.</summary>
    public IActivationObserver? Observer { get => _pass.Observer; set => _pass.Observer = value; }

    /// <summary>Optional per-part timing of every forward call; null (the default) costs one branch per part.</summary>
    public SessionProfile? Profile { get => _pass.Profile; set => _pass.Profile = value; }

    /// <param name="contextLength">0: min(config.ContextLength, 4096).</param>
    /// <param name="threads">0: Environment.ProcessorCount.</param>
    /// <param name="batchSize">Tokens per forward chunk; prompts longer than this are processed in several chunks.</param>
    public InferenceSession(ModelConfig config, ModelWeights weights, int contextLength = 0, int threads = 0,
        KvCacheType kvCacheType = KvCacheType.F32, int batchSize = DefaultBatchSize)
        : this(config, weights, contextLength, new WorkerPool(threads), ownsPool: true, kvCacheType, batchSize)
    {
    }

    /// <summary>
    /// A session that runs on a pool shared with other sessions (a server's sequences): one set of worker threads for
    /// the process, never more spinning threads than cores. The caller keeps the pool alive and disposes it; sessions
    /// sharing a pool must not run at the same time.
    /// </summary>
    public InferenceSession(ModelConfig config, ModelWeights weights, int contextLength, WorkerPool sharedPool,
        KvCacheType kvCacheType = KvCacheType.F32, int batchSize = DefaultBatchSize)
        : this(config, weights, contextLength, sharedPool ?? throw new ArgumentNullException(nameof(sharedPool)), ownsPool: false, kvCacheType, batchSize)
    {
    }

    private InferenceSession(ModelConfig config, ModelWeights weights, int contextLength, WorkerPool pool, bool ownsPool,
        KvCacheType kvCacheType, int batchSize)
    {
        try
        {
            _pool = pool;
            _ownsPool = ownsPool;
            contextLength = CheckModel(config, weights, contextLength);
            if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be positive");

            _config = config;
            ContextLength = contextLength;
            BatchSize = Math.Min(batchSize, contextLength);
            _vocab = config.VocabSize;
            _logits = new float[_vocab];
            _allRows = Enumerable.Range(0, BatchSize).ToArray();
            _pass = new ForwardPass(config, weights, pool, contextLength, BatchSize);
            _cache = new KvCache(config.LayerCount, contextLength, config.KvDim, kvCacheType);
        }
        catch
        {
            // A session that fails to build must not leave its own worker threads running.
            if (ownsPool) pool.Dispose();
            _cache?.Dispose();
            _pass?.Dispose();
            throw;
        }
    }

    /// <summary>Validates a model for a session; returns the context length (0: min(model's, 4096)).</summary>
    internal static int CheckModel(ModelConfig config, ModelWeights weights, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        config.Validate();
        if (weights.Layers.Length != config.LayerCount)
            throw new ArgumentException($"weights have {weights.Layers.Length} layers, the config {config.LayerCount}");
        if (contextLength == 0) contextLength = Math.Min(config.ContextLength, DefaultMaxContext);
        if (contextLength < 1 || contextLength > config.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(contextLength), $"context length {contextLength} is not in 1..{config.ContextLength} (the model's context)");
        return contextLength;
    }

    /// <summary>Forgets every token (the cache is overwritten by later calls).</summary>
    public void Reset() => Truncate(0);

    /// <summary>Rolls the cache back to its first <paramref name="position"/> tokens.</summary>
    public void Truncate(int position)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (position < 0 || position > Position)
            throw new ArgumentOutOfRangeException(nameof(position), $"cannot truncate to position {position}: the cache holds {Position} tokens");
        Position = position;
    }

    /// <summary>Appends the tokens and returns the logits of the last one (a session-owned buffer, valid until the next call).</summary>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens)
    {
        CheckTokens(tokens);
        long begin = _pass.StartProfile();
        int lastChunkRows = 0;
        for (int done = 0; done < tokens.Length; done += lastChunkRows)
        {
            lastChunkRows = Math.Min(BatchSize, tokens.Length - done);
            bool last = done + lastChunkRows == tokens.Length;
            _lastRow[0] = lastChunkRows - 1;
            // Only the last token's final state is needed (earlier chunks: none), so the last layer skips the rest.
            RunChunk(tokens.Slice(done, lastChunkRows), last ? _lastRow : ReadOnlySpan<int>.Empty);
        }
        _pass.Logits(_lastRow, _logits);
        _pass.EndProfile(begin, tokens.Length);
        return _logits;
    }

    /// <summary>Appends the tokens and writes the logits of every one of them: logits[i * vocab .. (i + 1) * vocab).</summary>
    public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if ((long)logits.Length < (long)tokens.Length * _vocab)
            throw new ArgumentException($"logits buffer of {logits.Length} floats, {(long)tokens.Length * _vocab} needed for {tokens.Length} tokens x {_vocab}");
        CheckTokens(tokens);
        long begin = _pass.StartProfile();
        for (int done = 0; done < tokens.Length;)
        {
            int n = Math.Min(BatchSize, tokens.Length - done);
            RunChunk(tokens.Slice(done, n), _allRows.AsSpan(0, n));
            _pass.Logits(_allRows.AsSpan(0, n), logits.Slice(done * _vocab, n * _vocab));
            done += n;
        }
        _pass.EndProfile(begin, tokens.Length);
    }

    private void CheckTokens(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to process");
        if ((long)Position + tokens.Length > ContextLength)
            throw new ArgumentException(Position == 0
                ? $"prompt of {tokens.Length} tokens exceeds the context of {ContextLength}"
                : $"{tokens.Length} tokens after the {Position} in the cache exceed the context of {ContextLength}");
        CheckTokenIds(tokens, _vocab);
    }

    internal static void CheckTokenIds(ReadOnlySpan<int> tokens, int vocab)
    {
        foreach (int t in tokens)
            if ((uint)t >= (uint)vocab) throw new ArgumentException($"token id {t} is out of range (vocabulary of {vocab})");
    }

    /// <summary>Runs up to BatchSize tokens through every layer; leaves the final hidden states of the rows in
    /// <paramref name="keep"/> in the pass.</summary>
    private void RunChunk(ReadOnlySpan<int> tokens, ReadOnlySpan<int> keep)
    {
        _pass.SetRows(0, tokens.Length, _cache, Position);
        if (keep.Length == tokens.Length) _pass.Run(tokens);
        else _pass.RunKeeping(tokens, keep);
        Position += tokens.Length;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_ownsPool) _pool.Dispose();
        _cache.Dispose();
        _pass.Dispose();
    }
}
