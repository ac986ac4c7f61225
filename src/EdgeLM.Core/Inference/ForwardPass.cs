using System.Diagnostics;
using System.Runtime.CompilerServices;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Inference;

/// <summary>
/// The decoder stack of a Qwen2/Llama model over up to <see cref="MaxRows"/> token rows at once, shared by
/// <see cref="InferenceSession"/> (the rows of one sequence) and <see cref="BatchedSession"/> (rows of several
/// sequences, each with its own KV cache). Every row carries its own cache and position, so one call can mix the
/// prompt chunk of one sequence with the decode tokens of others: every matmul runs once over all rows (the weights
/// are streamed once per call), attention runs in blocks of a sequence's rows per KV head against that sequence's cache.
/// Each output depends only on its own row (MatMul, norms, RoPE and attention compute a row the same way whatever
/// its place in the call), so a sequence gets bitwise the same logits alone or batched with others.
/// Owns the activation buffers, dequantized norms and biases and the rope tables; allocates nothing per call.
/// </summary>
internal sealed unsafe class ForwardPass : IDisposable
{
    private readonly ModelConfig _config;
    private readonly ModelWeights _weights;
    private readonly WorkerPool _pool;
    private readonly Rope _rope;
    private readonly AttentionJob _attention;
    private readonly NativeBuffer _activations;
    // Dequantized norm weights and biases, per layer, in one pinned block (the pool jobs take raw pointers).
    private readonly NativeBuffer _constants;
    private readonly float*[] _attnNorm, _ffnNorm;
    private readonly float*[] _bq, _bk, _bv; // null: no bias
    private readonly float* _outputNorm;
    private readonly RopeRows _ropeRows;
    private readonly int _hidden, _qDim, _kvDim, _ff, _vocab;
    private readonly float _eps;
    // Activation buffers for up to MaxRows tokens, row-major [row, feature], carved from _activations.
    private readonly float* _x, _xb, _q, _k, _v, _attnOut, _gate, _up;
    // Where each row of the current call belongs: its sequence's cache and its position in that sequence.
    private readonly KvCache?[] _rowCache;
    private readonly int[] _rowPosition;
    // After a Run that kept only some rows (RunKeeping): the row of _x each row of the call ended in, -1 if dropped.
    private readonly int[] _keptAt;
    private bool _keptAll = true;

    public int MaxRows { get; }
    public int ContextLength { get; }
    public WorkerPool Pool => _pool;
    public IActivationObserver? Observer { get; set; }
    public SessionProfile? Profile { get; set; }

    public ForwardPass(ModelConfig config, ModelWeights weights, WorkerPool pool, int contextLength, int maxRows)
    {
        _config = config;
        _weights = weights;
        _pool = pool;
        ContextLength = contextLength;
        MaxRows = maxRows;
        _hidden = config.HiddenSize;
        _qDim = config.QDim;
        _kvDim = config.KvDim;
        _ff = config.IntermediateSize;
        _vocab = config.VocabSize;
        _eps = (float)config.RmsNormEps;

        int layers = config.LayerCount;
        // Per layer, in this order: attention norm, FFN norm, q/k/v biases, Qwen3's q/k head norms.
        const int perLayer = 7;
        var constants = new List<float[]?>();
        foreach (var lw in weights.Layers)
            foreach (var t in new[] { lw.AttnNorm, lw.FfnNorm, lw.Bq, lw.Bk, lw.Bv, lw.QNorm, lw.KNorm })
                constants.Add(t is null ? null : ConstantValues(t));
        constants.Add(ConstantValues(weights.OutputNorm));
        long constantFloats = 0;
        foreach (var c in constants) if (c is not null) constantFloats += AlignedFloats(c.Length);
        _constants = new NativeBuffer(checked(constantFloats * sizeof(float)));
        var next = (float*)_constants.Pointer;
        var pointers = new float*[constants.Count];
        for (int i = 0; i < constants.Count; i++)
        {
            if (constants[i] is not { } values) continue;
            values.CopyTo(new Span<float>(next, values.Length));
            pointers[i] = next;
            next += AlignedFloats(values.Length);
        }
        _attnNorm = new float*[layers]; _ffnNorm = new float*[layers];
        _bq = new float*[layers]; _bk = new float*[layers]; _bv = new float*[layers];
        var qNorm = new float*[layers];
        var kNorm = new float*[layers];
        for (int l = 0; l < layers; l++)
        {
            int at = l * perLayer;
            _attnNorm[l] = pointers[at]; _ffnNorm[l] = pointers[at + 1];
            _bq[l] = pointers[at + 2]; _bk[l] = pointers[at + 3]; _bv[l] = pointers[at + 4];
            qNorm[l] = pointers[at + 5]; kNorm[l] = pointers[at + 6];
        }
        _outputNorm = pointers[^1];
        _rope = new Rope(config.HeadDim, contextLength, config.RopeTheta, config.RopeStyle);
        _rowCache = new KvCache?[maxRows];
        _rowPosition = new int[maxRows];
        _keptAt = new int[maxRows];

        long b = maxRows;
        long[] sizes = [b * _hidden, b * _hidden, b * _qDim, b * _kvDim, b * _kvDim, b * _qDim, b * _ff, b * _ff];
        long total = 0;
        foreach (long s in sizes) total += AlignedFloats(s);
        _activations = new NativeBuffer(checked(total * sizeof(float)));
        var cursor = (float*)_activations.Pointer;
        float* Take(long count) { float* p = cursor; cursor += AlignedFloats(count); return p; }
        _x = Take(sizes[0]); _xb = Take(sizes[1]); _q = Take(sizes[2]); _k = Take(sizes[3]);
        _v = Take(sizes[4]); _attnOut = Take(sizes[5]); _gate = Take(sizes[6]); _up = Take(sizes[7]);

        _attention = new AttentionJob(config, contextLength, _rowCache, _rowPosition, pool.ThreadCount);
        _ropeRows = new RopeRows(this, qNorm, kNorm);
        // Q4_0/Q5_0/Q8_0 matrices into the panel layout of the fast kernels (once per weights; EDGELM_REPACK=0: off).
        Kernels.Quantized.WeightRepacker.Prepare(weights, pool);
    }

    // Norm weights and biases as floats, read from the tensor once for all sessions (it is immutable, like the packed
    // matrices attached to theirs). These small tensors sit between packed matrices in the file, and a read of one
    // maps the page-cache pages around it (fault-around; with large page-cache folios, up to a whole folio): pages of
    // the neighbouring matrices that packing dropped from the resident set. Re-read by every session, they put about
    // 120 MiB of Qwen2.5-0.5B Q4_K_M's weights back into resident memory beside their packed copies.
    private static readonly ConditionalWeakTable<Tensor, float[]> ConstantCache = new();

    internal static float[] ConstantValues(Tensor t) => ConstantCache.GetValue(t, static t => Dequantize.ToFloat(t));

    // Keeps every buffer 64-byte aligned.
    private static long AlignedFloats(long count) => (count + 15) & ~15L;

    /// <summary>Rows [first, first + count) of the next <see cref="Run"/> are consecutive tokens of the sequence
    /// cached in <paramref name="cache"/>, the first at <paramref name="position"/>.</summary>
    public void SetRows(int first, int count, KvCache cache, int position)
    {
        for (int i = 0; i < count; i++)
        {
            _rowCache[first + i] = cache;
            _rowPosition[first + i] = position + i;
        }
    }

    /// <summary>
    /// Runs tokens[i] (row i, placed by <see cref="SetRows"/>) through every layer: stores each row's key and value
    /// in its cache at its position and leaves the final hidden states in the rows of _x. Callers have checked the
    /// tokens, positions and row count.
    /// </summary>
    public void Run(ReadOnlySpan<int> tokens) => Run(tokens, keepAll: true, default);

    /// <summary>
    /// <see cref="Run(ReadOnlySpan{int})"/> for callers that need the final hidden states of the rows in
    /// <paramref name="keep"/> only (increasing row indices; empty: none, e.g. a prompt chunk before the last): the
    /// last layer still stores every row's key and value, but runs attention, its output projection and the
    /// feed-forward block for the kept rows only, as llama.cpp does for rows without output. Each kept row gets the
    /// same bits as in a full run (every step computes a row alone). <see cref="Logits"/> then takes kept rows only.
    /// With an <see cref="Observer"/> every row is run (it sees all of them).
    /// </summary>
    public void RunKeeping(ReadOnlySpan<int> tokens, ReadOnlySpan<int> keep) => Run(tokens, keepAll: Observer is not null, keep);

    private void Run(ReadOnlySpan<int> tokens, bool keepAll, ReadOnlySpan<int> keep)
    {
        int n = tokens.Length, rows = n;
        _keptAll = true;
        int d = _hidden, heads = _config.HeadCount;
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

        var matMul = _pool.MatMulJob;
        // The norms go into the next matmul's input preparation (parallel by rows) unless an observer must see
        // their output, or the rows are too few to split (then the norm stays a separately profiled serial step).
        bool fuseNorms = Observer is null && n >= MatMul.RowPreparationMinRows;
        for (int l = 0; l < _config.LayerCount; l++)
        {
            var lw = _weights.Layers[l];
            Observe(l, ActivationSite.BlockInput, _x, n, d);
            BeginNormalized(matMul, l, _attnNorm[l], n, fuseNorms, ActivationSite.AttentionInput, ProfilePart.AttentionNorm, ref mark);
            matMul.Add(lw.Wq, _q, _qDim, _bq[l]);
            matMul.Add(lw.Wk, _k, _kvDim, _bk[l]);
            matMul.Add(lw.Wv, _v, _kvDim, _bv[l]);
            matMul.Run(_pool);
            Lap(ref mark, ProfilePart.QkvMatMul);
            _ropeRows.Layer = l;
            if (n >= RowJobMinRows) _pool.Run(_ropeRows, n);
            else _ropeRows.Execute(0, n, 0);
            Lap(ref mark, ProfilePart.RopeAndCache);
            if (!keepAll && l == _config.LayerCount - 1)
            {
                n = KeepRows(keep, n);
                if (n == 0) break;
                fuseNorms = n >= MatMul.RowPreparationMinRows;
            }

            // Every row's key and value of this layer is stored before any attention reads the caches, so rows of
            // one sequence in one call see each other causally.
            int attentionItems = _attention.Setup(l, _q, _attnOut, n);
            _pool.Run(_attention, attentionItems);
            Lap(ref mark, ProfilePart.Attention);

            Observe(l, ActivationSite.AttentionOutput, _attnOut, n, _qDim);
            matMul.Begin(_attnOut, n, _qDim);
            matMul.Add(lw.Wo, _xb, d);
            matMul.AddInto(_x);
            matMul.Run(_pool);
            Lap(ref mark, ProfilePart.AttentionOutput);

            BeginNormalized(matMul, l, _ffnNorm[l], n, fuseNorms, ActivationSite.FfnInput, ProfilePart.FfnNorm, ref mark);
            // silu(gate) * up is applied by the job to each slice of features as soon as both are computed.
            matMul.Add(lw.Gate, _gate, _ff);
            matMul.Add(lw.Up, _up, _ff);
            matMul.ApplySwiGlu();
            matMul.Run(_pool);
            Lap(ref mark, ProfilePart.GateUpMatMul);
            Observe(l, ActivationSite.FfnHidden, _gate, n, _ff);
            matMul.Begin(_gate, n, _ff);
            matMul.Add(lw.Down, _xb, d);
            matMul.AddInto(_x);
            matMul.Run(_pool);
            Lap(ref mark, ProfilePart.DownMatMul);
            Observe(l, ActivationSite.BlockOutput, _x, n, d);
        }
        // A removed sequence's cache must not stay reachable from here.
        Array.Clear(_rowCache, 0, rows);
    }

    /// <summary>Moves the kept rows' queries, residual stream, cache and position to rows 0..m-1 (in order, so no
    /// row is overwritten before it is moved) and records where each row went; returns m.</summary>
    private int KeepRows(ReadOnlySpan<int> keep, int n)
    {
        _keptAll = false;
        Array.Fill(_keptAt, -1, 0, n);
        for (int k = 0; k < keep.Length; k++)
        {
            int r = keep[k];
            if (r < 0 || r >= n || (k > 0 && r <= keep[k - 1])) throw new ArgumentException($"kept rows must be increasing rows of the call's {n}, got {r} at {k}");
            _keptAt[r] = k;
            if (r == k) continue;
            new ReadOnlySpan<float>(_q + (long)r * _qDim, _qDim).CopyTo(new Span<float>(_q + (long)k * _qDim, _qDim));
            new ReadOnlySpan<float>(_x + (long)r * _hidden, _hidden).CopyTo(new Span<float>(_x + (long)k * _hidden, _hidden));
            _rowCache[k] = _rowCache[r];
            _rowPosition[k] = _rowPosition[r];
        }
        return keep.Length;
    }

    /// <summary>
    /// Logits of the listed rows of the last <see cref="Run"/>: output norm of each, then one matmul over all of them
    /// (the output head, the largest weight, is streamed once). logits[k * vocab ..] belongs to rows[k].
    /// </summary>
    public void Logits(ReadOnlySpan<int> rows, Span<float> logits)
    {
        int count = rows.Length, d = _hidden;
        long mark = Profile is null ? 0 : Stopwatch.GetTimestamp();
        for (int k = 0; k < count; k++)
        {
            int row = _keptAll ? rows[k] : _keptAt[rows[k]];
            if (row < 0) throw new InvalidOperationException($"row {rows[k]} was not kept by the last run");
            RmsNorm.Apply(_x + (long)row * d, _outputNorm, _xb + (long)k * d, d, _eps);
        }
        Lap(ref mark, ProfilePart.OutputNorm);
        MatMul.Compute(_weights.Output, new ReadOnlySpan<float>(_xb, count * d), logits[..(count * _vocab)], count, _pool);
        Lap(ref mark, ProfilePart.OutputHead);
    }

    public long StartProfile()
    {
        if (Profile is null) return 0;
        _pool.Profiling = true;
        _pool.WaitTicks = 0;
        _pool.FirstPhaseTicks = 0;
        _pool.MatMulJob.QuantizeTicks = 0;
        return Stopwatch.GetTimestamp();
    }

    public void EndProfile(long begin, int tokens)
    {
        if (Profile is not { } profile) return;
        profile.AddForward(tokens, Stopwatch.GetTimestamp() - begin);
        profile.Add(ProfilePart.PoolWait, _pool.WaitTicks);
        profile.Add(ProfilePart.QuantizeInput, _pool.MatMulJob.QuantizeTicks);
        _pool.Profiling = false;
    }

    /// <summary>
    /// Starts a matmul whose input is RmsNorm(_x) * norm in _xb: done by the job's workers when fused, else here
    /// (observed and profiled as its own part).
    /// </summary>
    private void BeginNormalized(MatMul.Job matMul, int layer, float* norm, int n, bool fuse, ActivationSite site, ProfilePart part, ref long mark)
    {
        int d = _hidden;
        matMul.Begin(_xb, n, d);
        if (fuse)
        {
            matMul.NormalizeInput(_x, norm, _eps);
            return;
        }
        for (int i = 0; i < n; i++) RmsNorm.Apply(_x + (long)i * d, norm, _xb + (long)i * d, d, _eps);
        Observe(layer, site, _xb, n, d);
        Lap(ref mark, part);
    }

    /// <summary>Charges the time since <paramref name="mark"/> to <paramref name="part"/> and restarts the mark.</summary>
    private void Lap(ref long mark, ProfilePart part)
    {
        if (Profile is not { } profile) return;
        long now = Stopwatch.GetTimestamp();
        profile.Add(part, now - mark);
        mark = now;
    }

    private void Observe(int layer, ActivationSite site, float* rows, int n, int width)
    {
        if (Observer is { } observer) observer.Observe(layer, site, new ReadOnlySpan<float>(rows, n * width), n, width);
    }

    /// <summary>Below this many rows, RoPE and the cache store run on the calling thread (a pool run costs more).</summary>
    private const int RowJobMinRows = 4;

    /// <summary>
    /// Per row of the layer set in <see cref="Layer"/>: Qwen3's per-head RMSNorm of q and k, RoPE of both at the
    /// row's position, and the store of k and v in the row's cache. Rows are independent (a row's arithmetic does
    /// not depend on which thread runs it), so prefill splits them between the threads.
    /// </summary>
    private sealed class RopeRows(ForwardPass pass, float*[] qNorm, float*[] kNorm) : IRangeJob
    {
        public int Layer;

        public void Execute(int begin, int end, int worker)
        {
            var p = pass;
            int heads = p._config.HeadCount, kvHeads = p._config.KvHeadCount, hd = p._config.HeadDim;
            float* qn = qNorm[Layer], kn = kNorm[Layer];
            for (int i = begin; i < end; i++)
            {
                int position = p._rowPosition[i];
                float* q = p._q + (long)i * p._qDim, k = p._k + (long)i * p._kvDim;
                if (qn != null) for (int h = 0; h < heads; h++) RmsNorm.Apply(q + h * hd, qn, q + h * hd, hd, p._eps);
                if (kn != null) for (int h = 0; h < kvHeads; h++) RmsNorm.Apply(k + h * hd, kn, k + h * hd, hd, p._eps);
                p._rope.Apply(q, heads, position);
                p._rope.Apply(k, kvHeads, position);
                p._rowCache[i]!.Store(Layer, position, k, p._v + (long)i * p._kvDim);
            }
        }
    }

    public void Dispose()
    {
        _activations.Dispose();
        _constants.Dispose();
    }

    /// <summary>
    /// Causal attention of every row against its own sequence's cache, in work items of (up to RowsPerItem
    /// consecutive rows of one cache, one KV head, that head's query heads): the item's queries share every key/value
    /// block they load (<see cref="Attention"/>). Items of a long prompt are enough for any thread count; a call with
    /// few rows (decode) splits each KV head's query heads over several items instead. A row's result does not depend on
    /// the split (see <see cref="Attention"/>), so batching, blocking and thread count never change its bits.
    /// </summary>
    private sealed class AttentionJob : IRangeJob
    {
        // 72 = 3 x 24: with 8 lanes the score tile takes three query vectors, and group sizes 2, 6 and 8 fill it
        // exactly (7 leaves 2 padding lanes of 72).
        private const int MaxQueriesPerItem = 72;
        private readonly KvCache?[] _rowCache;
        private readonly int[] _rowPosition;
        private readonly int _headDim, _kvHeads, _groupSize, _qDim, _rowsPerItem, _threads;
        private readonly float _scale;
        private readonly AttentionScratch[] _scratch;
        private readonly int[] _blockFirst, _blockRows; // row blocks of the current call
        private int _blockCount, _headParts, _headsPerPart;
        private int _layer;
        private float* _q, _out;

        public AttentionJob(ModelConfig config, int contextLength, KvCache?[] rowCache, int[] rowPosition, int threads)
        {
            _ = contextLength; // nothing here grows with the context
            _rowCache = rowCache;
            _rowPosition = rowPosition;
            _headDim = config.HeadDim;
            _kvHeads = config.KvHeadCount;
            _groupSize = config.HeadCount / config.KvHeadCount;
            _qDim = config.QDim;
            _threads = threads;
            _rowsPerItem = Math.Max(1, MaxQueriesPerItem / _groupSize);
            _scale = (float)(1.0 / Math.Sqrt(config.HeadDim));
            _scratch = new AttentionScratch[threads];
            for (int i = 0; i < threads; i++) _scratch[i] = new AttentionScratch(_rowsPerItem * _groupSize, _headDim);
            _blockFirst = new int[rowCache.Length];
            _blockRows = new int[rowCache.Length];
        }

        /// <summary>Groups rows [0, rows) into items for layer <paramref name="layer"/>; returns the item count.</summary>
        public int Setup(int layer, float* q, float* output, int rows)
        {
            _layer = layer; _q = q; _out = output;
            _blockCount = 0;
            if (rows <= 0) return 0;
            for (int i = 0; i < rows; i++)
            {
                int b = _blockCount - 1;
                if (b >= 0 && _rowCache[i] == _rowCache[_blockFirst[b]] && _blockRows[b] < _rowsPerItem) _blockRows[b]++;
                else { _blockFirst[_blockCount] = i; _blockRows[_blockCount] = 1; _blockCount++; }
            }
            // Too few (row block, KV head) items to keep every thread busy: give each item a share of the query heads.
            int wanted = (_threads + _blockCount * _kvHeads - 1) / (_blockCount * _kvHeads);
            _headsPerPart = (_groupSize + Math.Min(wanted, _groupSize) - 1) / Math.Min(wanted, _groupSize);
            _headParts = (_groupSize + _headsPerPart - 1) / _headsPerPart;
            return _blockCount * _kvHeads * _headParts;
        }

        public void Execute(int begin, int end, int worker)
        {
            var scratch = _scratch[worker];
            int hd = _headDim, perBlock = _kvHeads * _headParts;
            fixed (int* positions = _rowPosition)
            {
                for (int index = begin; index < end; index++)
                {
                    // Later blocks sit at later positions and cost more: hand them out first.
                    int block = _blockCount - 1 - index / perBlock;
                    int kvHead = index % perBlock / _headParts, part = index % _headParts;
                    int first = _blockFirst[block];
                    int headBegin = kvHead * _groupSize + part * _headsPerPart;
                    var cache = _rowCache[first]!;
                    long kvOffset = (long)kvHead * hd * cache.ElementBytes;
                    var item = new AttentionItem
                    {
                        Queries = _q + (long)first * _qDim + (long)headBegin * hd,
                        Output = _out + (long)first * _qDim + (long)headBegin * hd,
                        RowStride = _qDim,
                        Positions = positions + first,
                        Rows = _blockRows[block],
                        Heads = Math.Min(_headsPerPart, (kvHead + 1) * _groupSize - headBegin),
                        HeadDim = hd,
                        Keys = cache.Keys(_layer) + kvOffset,
                        Values = cache.Values(_layer) + kvOffset,
                        KvStride = cache.KvDim,
                        HalfCache = cache.Type == KvCacheType.F16,
                        Scale = _scale,
                    };
                    Attention.Compute(item, scratch);
                }
            }
        }
    }
}
