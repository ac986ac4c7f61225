using System.Diagnostics;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Inference;

/// <summary>
/// The forward pass of a Qwen2/Llama decoder over a growing sequence: owns the KV cache, every activation buffer
/// (sized once for a batch of tokens; longer prompts run in chunks), the rope tables and the worker threads.
/// Steady-state calls allocate nothing. Not thread-safe: one call at a time.
/// </summary>
public sealed unsafe class InferenceSession : IDisposable
{
    public const int DefaultMaxContext = 4096;
    public const int DefaultBatchSize = 512;

    private readonly ModelConfig _config;
    private readonly ModelWeights _weights;
    private readonly WorkerPool _pool;
    private readonly bool _ownsPool;
    private readonly KvCache _cache;
    private readonly Rope _rope;
    private readonly AttentionJob _attention;
    private readonly NativeBuffer _activations;
    private readonly float[][] _attnNorm, _ffnNorm;
    private readonly float[]?[] _bq, _bk, _bv;
    private readonly float[] _outputNorm;
    private readonly float[]?[] _qNorm, _kNorm; // Qwen3: per-head RMSNorm of q and k before RoPE
    private readonly float[] _logits;
    private readonly int _hidden, _qDim, _kvDim, _ff, _vocab;
    private readonly float _eps;
    // Activation buffers for up to BatchSize tokens, row-major [token, feature], carved from _activations.
    private readonly float* _x, _xb, _q, _k, _v, _attnOut, _gate, _up;
    private bool _disposed;

    public ModelConfig Config => _config;
    public int ContextLength { get; }
    public int BatchSize { get; }
    public int ThreadCount => _pool.ThreadCount;
    public KvCacheType KvCacheType => _cache.Type;
    /// <summary>Tokens in the cache; the next token is at this position.</summary>
    public int Position { get; private set; }

    /// <summary>Optional calibration hook; null (the default) costs one branch per site.</summary>
    public IActivationObserver? Observer { get; set; }

    /// <summary>Optional per-part timing of every forward call; null (the default) costs one branch per part.</summary>
    public SessionProfile? Profile { get; set; }

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
            ArgumentNullException.ThrowIfNull(config);
            ArgumentNullException.ThrowIfNull(weights);
            config.Validate();
            if (weights.Layers.Length != config.LayerCount)
                throw new ArgumentException($"weights have {weights.Layers.Length} layers, the config {config.LayerCount}");
            if (contextLength == 0) contextLength = Math.Min(config.ContextLength, DefaultMaxContext);
            if (contextLength < 1 || contextLength > config.ContextLength)
                throw new ArgumentOutOfRangeException(nameof(contextLength), $"context length {contextLength} is not in 1..{config.ContextLength} (the model's context)");
            if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be positive");

            _config = config;
            _weights = weights;
            ContextLength = contextLength;
            BatchSize = Math.Min(batchSize, contextLength);
            _hidden = config.HiddenSize;
            _qDim = config.QDim;
            _kvDim = config.KvDim;
            _ff = config.IntermediateSize;
            _vocab = config.VocabSize;
            _eps = (float)config.RmsNormEps;

            int layers = config.LayerCount;
            _attnNorm = new float[layers][];
            _ffnNorm = new float[layers][];
            _bq = new float[layers][];
            _bk = new float[layers][];
            _bv = new float[layers][];
            for (int l = 0; l < layers; l++)
            {
                var lw = weights.Layers[l];
                _attnNorm[l] = Dequantize.ToFloat(lw.AttnNorm);
                _ffnNorm[l] = Dequantize.ToFloat(lw.FfnNorm);
                _bq[l] = lw.Bq is null ? null : Dequantize.ToFloat(lw.Bq);
                _bk[l] = lw.Bk is null ? null : Dequantize.ToFloat(lw.Bk);
                _bv[l] = lw.Bv is null ? null : Dequantize.ToFloat(lw.Bv);
            }
            _outputNorm = Dequantize.ToFloat(weights.OutputNorm);
            _qNorm = weights.Layers.Select(lw => lw.QNorm is null ? null : Dequantize.ToFloat(lw.QNorm)).ToArray();
            _kNorm = weights.Layers.Select(lw => lw.KNorm is null ? null : Dequantize.ToFloat(lw.KNorm)).ToArray();
            _logits = new float[_vocab];
            _rope = new Rope(config.HeadDim, contextLength, config.RopeTheta, config.RopeStyle);

            long b = BatchSize;
            long[] sizes = [b * _hidden, b * _hidden, b * _qDim, b * _kvDim, b * _kvDim, b * _qDim, b * _ff, b * _ff];
            long total = 0;
            foreach (long s in sizes) total += AlignedFloats(s);
            _activations = new NativeBuffer(checked(total * sizeof(float)));
            var cursor = (float*)_activations.Pointer;
            float* Take(long count) { float* p = cursor; cursor += AlignedFloats(count); return p; }
            _x = Take(sizes[0]); _xb = Take(sizes[1]); _q = Take(sizes[2]); _k = Take(sizes[3]);
            _v = Take(sizes[4]); _attnOut = Take(sizes[5]); _gate = Take(sizes[6]); _up = Take(sizes[7]);

            // Q4_0/Q5_0/Q8_0 matrices into the panel layout of the fast kernels (once per weights; EDGELM_REPACK=0: off).
            Kernels.Quantized.WeightRepacker.Prepare(weights, pool);
            _cache = new KvCache(layers, contextLength, _kvDim, kvCacheType);
            _attention = new AttentionJob(config, _cache, _pool.ThreadCount);
        }
        catch
        {
            // A session that fails to build must not leave its own worker threads running.
            if (ownsPool) pool.Dispose();
            _cache?.Dispose();
            _activations?.Dispose();
            throw;
        }
    }

    // Keeps every buffer 64-byte aligned.
    private static long AlignedFloats(long count) => (count + 15) & ~15L;

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
        long begin = StartProfile();
        int lastChunkRows = 0;
        for (int done = 0; done < tokens.Length; done += lastChunkRows)
        {
            lastChunkRows = Math.Min(BatchSize, tokens.Length - done);
            RunChunk(tokens.Slice(done, lastChunkRows));
        }
        long mark = Profile is null ? 0 : Stopwatch.GetTimestamp();
        float* last = _x + (long)(lastChunkRows - 1) * _hidden;
        fixed (float* norm = _outputNorm) RmsNorm.Apply(last, norm, _xb, _hidden, _eps);
        Lap(ref mark, ProfilePart.OutputNorm);
        MatMul.Compute(_weights.Output, new ReadOnlySpan<float>(_xb, _hidden), _logits, 1, _pool);
        Lap(ref mark, ProfilePart.OutputHead);
        EndProfile(begin, tokens.Length);
        return _logits;
    }

    /// <summary>Appends the tokens and writes the logits of every one of them: logits[i * vocab .. (i + 1) * vocab).</summary>
    public void ForwardAll(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if ((long)logits.Length < (long)tokens.Length * _vocab)
            throw new ArgumentException($"logits buffer of {logits.Length} floats, {(long)tokens.Length * _vocab} needed for {tokens.Length} tokens x {_vocab}");
        CheckTokens(tokens);
        long begin = StartProfile();
        for (int done = 0; done < tokens.Length;)
        {
            int n = Math.Min(BatchSize, tokens.Length - done);
            RunChunk(tokens.Slice(done, n));
            long mark = Profile is null ? 0 : Stopwatch.GetTimestamp();
            fixed (float* norm = _outputNorm)
                for (int i = 0; i < n; i++) RmsNorm.Apply(_x + (long)i * _hidden, norm, _xb + (long)i * _hidden, _hidden, _eps);
            Lap(ref mark, ProfilePart.OutputNorm);
            MatMul.Compute(_weights.Output, new ReadOnlySpan<float>(_xb, n * _hidden), logits.Slice(done * _vocab, n * _vocab), n, _pool);
            Lap(ref mark, ProfilePart.OutputHead);
            done += n;
        }
        EndProfile(begin, tokens.Length);
    }

    private long StartProfile()
    {
        if (Profile is null) return 0;
        _pool.Profiling = true;
        _pool.WaitTicks = 0;
        _pool.MatMulJob.QuantizeTicks = 0;
        return Stopwatch.GetTimestamp();
    }

    private void EndProfile(long begin, int tokens)
    {
        if (Profile is not { } profile) return;
        profile.AddForward(tokens, Stopwatch.GetTimestamp() - begin);
        profile.Add(ProfilePart.PoolWait, _pool.WaitTicks);
        profile.Add(ProfilePart.QuantizeInput, _pool.MatMulJob.QuantizeTicks);
        _pool.Profiling = false;
    }

    /// <summary>Charges the time since <paramref name="mark"/> to <paramref name="part"/> and restarts the mark.</summary>
    private void Lap(ref long mark, ProfilePart part)
    {
        if (Profile is not { } profile) return;
        long now = Stopwatch.GetTimestamp();
        profile.Add(part, now - mark);
        mark = now;
    }

    private void CheckTokens(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to process");
        if ((long)Position + tokens.Length > ContextLength)
            throw new ArgumentException(Position == 0
                ? $"prompt of {tokens.Length} tokens exceeds the context of {ContextLength}"
                : $"{tokens.Length} tokens after the {Position} in the cache exceed the context of {ContextLength}");
        foreach (int t in tokens)
            if ((uint)t >= (uint)_vocab) throw new ArgumentException($"token id {t} is out of range (vocabulary of {_vocab})");
    }

    /// <summary>Runs up to BatchSize tokens through every layer; leaves their final hidden states in _x.</summary>
    private void RunChunk(ReadOnlySpan<int> tokens)
    {
        int n = tokens.Length, start = Position;
        int d = _hidden, heads = _config.HeadCount, kvHeads = _config.KvHeadCount;
        var embedding = _weights.TokenEmbedding;
        long embeddingStride = embedding.RowStride;
        long mark = Profile is null ? 0 : Stopwatch.GetTimestamp();
        var packedEmbedding = Kernels.Quantized.WeightRepacker.Find(embedding); // tied output head: read the packed copy
        for (int i = 0; i < n; i++)
        {
            if (packedEmbedding != null) packedEmbedding.DequantizeRow(tokens[i], _x + (long)i * d);
            else RowConvert.RowUnchecked(embedding.Type, embedding.Data + tokens[i] * embeddingStride, embeddingStride, _x + (long)i * d, d);
        }
        Lap(ref mark, ProfilePart.Embedding);

        for (int l = 0; l < _config.LayerCount; l++)
        {
            var lw = _weights.Layers[l];
            Observe(l, ActivationSite.BlockInput, _x, n, d);
            fixed (float* norm = _attnNorm[l])
                for (int i = 0; i < n; i++) RmsNorm.Apply(_x + (long)i * d, norm, _xb + (long)i * d, d, _eps);
            Observe(l, ActivationSite.AttentionInput, _xb, n, d);
            Lap(ref mark, ProfilePart.AttentionNorm);
            MatMul.ComputeFused(_pool, _xb, n, lw.Wq, _q, lw.Wk, _k, lw.Wv, _v);
            Lap(ref mark, ProfilePart.QkvMatMul);
            AddBias(_q, _bq[l], n, _qDim);
            AddBias(_k, _bk[l], n, _kvDim);
            AddBias(_v, _bv[l], n, _kvDim);
            HeadRmsNorm(_q, _qNorm[l], n * heads);
            HeadRmsNorm(_k, _kNorm[l], n * kvHeads);
            for (int i = 0; i < n; i++)
            {
                _rope.Apply(_q + (long)i * _qDim, heads, start + i);
                _rope.Apply(_k + (long)i * _kvDim, kvHeads, start + i);
                _cache.Store(l, start + i, _k + (long)i * _kvDim, _v + (long)i * _kvDim);
            }
            Lap(ref mark, ProfilePart.RopeAndCache);

            _attention.Setup(l, start, n, _q, _attnOut);
            _pool.Run(_attention, n * heads, _pool.GrainFor(n * heads));
            Lap(ref mark, ProfilePart.Attention);

            Observe(l, ActivationSite.AttentionOutput, _attnOut, n, _qDim);
            MatMul.Compute(lw.Wo, new ReadOnlySpan<float>(_attnOut, n * _qDim), new Span<float>(_xb, n * d), n, _pool);
            Elementwise.Add(_x, _xb, n * d);
            Lap(ref mark, ProfilePart.AttentionOutput);

            fixed (float* norm = _ffnNorm[l])
                for (int i = 0; i < n; i++) RmsNorm.Apply(_x + (long)i * d, norm, _xb + (long)i * d, d, _eps);
            Observe(l, ActivationSite.FfnInput, _xb, n, d);
            Lap(ref mark, ProfilePart.FfnNorm);
            MatMul.ComputeFused(_pool, _xb, n, lw.Gate, _gate, lw.Up, _up);
            Lap(ref mark, ProfilePart.GateUpMatMul);
            SwiGlu.Apply(_gate, _up, n * _ff);
            Lap(ref mark, ProfilePart.SwiGlu);
            Observe(l, ActivationSite.FfnHidden, _gate, n, _ff);
            MatMul.Compute(lw.Down, new ReadOnlySpan<float>(_gate, n * _ff), new Span<float>(_xb, n * d), n, _pool);
            Elementwise.Add(_x, _xb, n * d);
            Lap(ref mark, ProfilePart.DownMatMul);
            Observe(l, ActivationSite.BlockOutput, _x, n, d);
        }
        Position = start + n;
    }

    private void Observe(int layer, ActivationSite site, float* rows, int n, int width)
    {
        if (Observer is { } observer) observer.Observe(layer, site, new ReadOnlySpan<float>(rows, n * width), n, width);
    }

    private static void AddBias(float* rows, float[]? bias, int n, int width)
    {
        if (bias is null) return;
        fixed (float* b = bias)
            for (int i = 0; i < n; i++) Elementwise.Add(rows + (long)i * width, b, width);
    }

    /// <summary>RMSNorm over each head_dim-long vector in place (Qwen3's q_norm / k_norm); nothing when weight is null.</summary>
    private void HeadRmsNorm(float* heads, float[]? weight, int count)
    {
        if (weight is null) return;
        int hd = _config.HeadDim;
        fixed (float* w = weight)
            for (int i = 0; i < count; i++) RmsNorm.Apply(heads + (long)i * hd, w, heads + (long)i * hd, hd, _eps);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_ownsPool) _pool.Dispose();
        _cache.Dispose();
        _activations.Dispose();
    }

    /// <summary>
    /// Causal attention of a chunk against the cache, one (token, head) pair per work item: scores over every cached
    /// position up to the token's own, softmax, weighted sum of values. Per-thread score buffers of context length.
    /// </summary>
    private sealed class AttentionJob : IRangeJob
    {
        private readonly KvCache _cache;
        private readonly int _heads, _headDim, _kvDim, _groupSize;
        private readonly float _scale;
        private readonly float[][] _scores;
        private readonly float[][] _convertedRow; // F16 cache: one key/value head converted to float
        private int _layer, _start, _n;
        private float* _q, _out;

        public AttentionJob(ModelConfig config, KvCache cache, int threads)
        {
            _cache = cache;
            _heads = config.HeadCount;
            _headDim = config.HeadDim;
            _kvDim = config.KvDim;
            _groupSize = config.HeadCount / config.KvHeadCount;
            _scale = (float)(1.0 / Math.Sqrt(config.HeadDim));
            _scores = new float[threads][];
            _convertedRow = new float[threads][];
            for (int i = 0; i < threads; i++)
            {
                _scores[i] = new float[cache.ContextLength];
                _convertedRow[i] = new float[config.HeadDim];
            }
        }

        public void Setup(int layer, int start, int n, float* q, float* output)
        {
            _layer = layer; _start = start; _n = n; _q = q; _out = output;
        }

        public void Execute(int begin, int end, int worker)
        {
            int hd = _headDim, kvDim = _kvDim;
            bool f16 = _cache.Type == KvCacheType.F16;
            byte* keys = _cache.Keys(_layer), values = _cache.Values(_layer);
            fixed (float* scores = _scores[worker], row = _convertedRow[worker])
            {
                for (int item = begin; item < end; item++)
                {
                    int token = item / _heads, head = item % _heads;
                    int kvOffset = head / _groupSize * hd;
                    int visible = _start + token + 1;
                    float* q = _q + (long)token * _heads * hd + head * hd;
                    for (int j = 0; j < visible; j++)
                    {
                        long at = (long)j * kvDim + kvOffset;
                        float* k;
                        if (f16) { RowConvert.HalfToSingle((ushort*)keys + at, row, hd); k = row; }
                        else k = (float*)keys + at;
                        scores[j] = Dot.Compute(q, k, hd) * _scale;
                    }
                    Softmax.Apply(scores, visible);
                    float* o = _out + (long)token * _heads * hd + head * hd;
                    new Span<float>(o, hd).Clear();
                    for (int j = 0; j < visible; j++)
                    {
                        long at = (long)j * kvDim + kvOffset;
                        float* v;
                        if (f16) { RowConvert.HalfToSingle((ushort*)values + at, row, hd); v = row; }
                        else v = (float*)values + at;
                        Dot.Axpy(scores[j], v, o, hd);
                    }
                }
            }
        }
    }
}
