using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels;

/// <summary>
/// y = x W^T for a weight of any type: y[t, r] = dot(W.Row(r), x[t]).
/// Quantized weights with an integer kernel: the input rows are quantized once per call (ggml's vec_dot_type) into
/// pool-owned scratch, then every output comes from <see cref="IWeightKernel.Tile"/>. Float weights (and types
/// without a kernel, dequantized to float scratch) use register-blocked float tiles; F16 decode converts in registers.
/// Output rows are split into units of <see cref="RowsPerUnit"/> (a 64-byte line of outputs per token), handed to
/// threads in contiguous runs; inside a unit tokens are processed in chunks so each weight row is loaded once per
/// chunk rather than once per token. Every output is computed by the same code in the same order whatever the
/// thread count or the position of its token in the batch, so results are bitwise reproducible.
/// </summary>
public static unsafe class MatMul
{
    internal const int RowsPerUnit = 16;
    internal const int TokensPerChunk = 64;
    /// <summary>
    /// Token chunk of the float prefill tile: a multiple of its 3 tokens, so only the last chunk has edge tokens. 33
    /// rather than 66 keeps the 64 converted rows of k = 896 (229 KB), the chunk (118 KB) and the parked
    /// accumulators (68 KB) inside the 512 KB L2, and a pass of the down projection's chunk (k = 4864) with them.
    /// </summary>
    internal const int FloatTokensPerChunk = 33;
    /// <summary>
    /// Units the float prefill converts and sweeps together: each token chunk read from L3 serves 64 rows, not 16
    /// (64 converted rows of k = 896 plus a 66-token chunk of x fit the 512 KB L2).
    /// </summary>
    internal const int FloatUnitsPerGroup = 4;

    /// <param name="x">n input rows of w.RowLength floats, row-major.</param>
    /// <param name="y">n output rows of w.RowCount floats, row-major.</param>
    public static void Compute(Tensor w, ReadOnlySpan<float> x, Span<float> y, int n, WorkerPool pool)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(pool);
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"row count {n} is negative");
        int inDim = w.RowLength;
        int outDim = CheckRows(w);
        if (x.Length < (long)n * inDim) throw new ArgumentException($"matmul with '{w.Name}': input has {x.Length} floats, {(long)n * inDim} needed");
        if (y.Length < (long)n * outDim) throw new ArgumentException($"matmul with '{w.Name}': output has {y.Length} floats, {(long)n * outDim} needed");
        if (n == 0) return;
        fixed (float* px = x, py = y)
        {
            var job = pool.MatMulJob;
            job.Begin(px, n, inDim);
            job.Add(w, py, outDim);
            job.Run(pool);
        }
    }

    /// <summary>
    /// Several weights applied to the same input in one pool run (Q/K/V, gate/up): one barrier instead of several,
    /// and the input is quantized once per activation format. Buffers are trusted (session-internal).
    /// </summary>
    internal static void ComputeFused(WorkerPool pool, float* x, int n, Tensor w0, float* y0, Tensor w1, float* y1, Tensor? w2 = null, float* y2 = null)
    {
        var job = pool.MatMulJob;
        job.Begin(x, n, w0.RowLength);
        job.Add(w0, y0, CheckRows(w0));
        job.Add(w1, y1, CheckRows(w1));
        if (w2 is not null) job.Add(w2, y2, CheckRows(w2));
        job.Run(pool);
    }

    private static int CheckRows(Tensor w)
    {
        long rows = w.RowCount;
        if (rows > int.MaxValue) throw new ArgumentException($"tensor '{w.Name}' has too many rows ({rows}) for a matmul");
        return (int)rows;
    }

    /// <summary>The integer tile of a weight type, or null when the type has no kernel (float fallback).</summary>
    internal static delegate*<byte*, long, int, byte*, long, int, int, float*, long, void> KernelTile(GgmlType type, out ActivationFormat format)
    {
        switch (type)
        {
            case GgmlType.Q8_0: format = Q8_0Kernel.Activation; return &TileOf<Q8_0Kernel>;
            case GgmlType.Q4_0: format = Q4_0Kernel.Activation; return &TileOf<Q4_0Kernel>;
            case GgmlType.Q4_1: format = Q4_1Kernel.Activation; return &TileOf<Q4_1Kernel>;
            case GgmlType.Q5_0: format = Q5_0Kernel.Activation; return &TileOf<Q5_0Kernel>;
            case GgmlType.Q5_1: format = Q5_1Kernel.Activation; return &TileOf<Q5_1Kernel>;
            case GgmlType.Q2_K: format = Q2_KKernel.Activation; return &TileOf<Q2_KKernel>;
            case GgmlType.Q3_K: format = Q3_KKernel.Activation; return &TileOf<Q3_KKernel>;
            case GgmlType.Q4_K: format = Q4_KKernel.Activation; return &TileOf<Q4_KKernel>;
            case GgmlType.Q5_K: format = Q5_KKernel.Activation; return &TileOf<Q5_KKernel>;
            case GgmlType.Q6_K: format = Q6_KKernel.Activation; return &TileOf<Q6_KKernel>;
            default: format = default; return null;
        }
    }

    private static void TileOf<TKernel>(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
        where TKernel : IWeightKernel => TKernel.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);

    /// <summary>One weight of a (possibly fused) matmul.</summary>
    private struct Segment
    {
        public Tensor Weight;
        public float* Output;
        public int OutDim;
        public int FirstUnit;
        public delegate*<byte*, long, int, byte*, long, int, int, float*, long, void> Tile; // null: float path
        public ActivationFormat Format;
        public RepackedMatrix? Packed; // non-null: panel kernels (RowsPerUnit is a multiple of the panel height)
        public bool HalvesFinite; // an F16 weight without inf/NaN: decode skips its range check
        public float* Bias; // non-null: added to every output row
    }

    /// <summary>
    /// Below this many input rows the input is prepared (quantized) in pieces of <see cref="PieceFloats"/> values
    /// rather than row by row, so that decode's single row is split between the threads too.
    /// </summary>
    internal const int RowPreparationMinRows = 4;
    /// <summary>A piece of an input row prepared by one thread: a whole number of blocks of every activation format
    /// (Q8_K's 256 included), so a piece quantizes exactly as the same values inside the whole row.</summary>
    internal const int PieceFloats = 256;

    /// <summary>
    /// The job object, one per pool, so that dispatch allocates nothing in steady state. One pool run does the whole
    /// matmul: first the input rows are prepared (optionally RMS-normalized from a source row, then quantized to each
    /// activation format the weights need) by all threads, then, past the pool's first-phase barrier, the output
    /// units, each followed by its epilogue (bias, residual add, SwiGlu of a gate/up pair) on the rows just computed
    /// while they are in cache. Every step is a per-row or per-element function of values computed the same way
    /// whatever the split, so results do not depend on the thread count or on the other rows of the call.
    /// </summary>
    internal sealed class Job : IRangeJob
    {
        private const int MaxSegments = 3;
        private const int FormatCount = 3;
        private readonly Segment[] _segments = new Segment[MaxSegments];
        private int _segmentCount, _units;
        private float* _x;
        private int _n, _in;
        // Optional input normalization: x row t = RmsNorm(_normSource row t) * _normWeight, done by the job.
        private float* _normSource, _normWeight;
        private float _normEps;
        // Epilogues: a residual stream the single segment's output is added into; gate/up pair with SwiGlu.
        private float* _residual;
        private bool _swiGlu;
        // Quantized input per activation format, reused across calls; grows only when a larger input is seen.
        private readonly Tensors.NativeBuffer?[] _quantized = new Tensors.NativeBuffer?[FormatCount];
        private readonly bool[] _formatUsed = new bool[FormatCount];
        private readonly byte*[] _quantizedRows = new byte*[FormatCount];
        private readonly long[] _quantizedStride = new long[FormatCount];
        // Per-block side data of the Q8_0 input for packed weights (RepackKernels.ActivationInfoRow).
        private Tensors.NativeBuffer? _activationInfo;
        private bool _infoUsed;
        private byte* _info;
        // The input rows copied at FloatPanelKernels.InputStride for packed float weights with several rows (prefill).
        private Tensors.NativeBuffer? _floatInput;
        private float* _floatRows;
        private int _floatStride;
        private int _piecesPerRow, _prepareItems;
        // Per-worker float scratch, 64-byte aligned: the prefill tile reads its converted rows with 32-byte loads
        // thousands of times, and a managed array's 8-byte alignment made half of them split cache lines
        // (run-to-run swings of ~20% depending on where the GC put the array).
        private Tensors.NativeBuffer?[] _scratch = [];
        /// <summary>Time spent preparing (normalizing, quantizing) inputs while the pool is profiling: the caller's
        /// serial preparation plus its time in the parallel phase, barrier included.</summary>
        internal long QuantizeTicks;

        public void Begin(float* x, int n, int inDim)
        {
            _x = x; _n = n; _in = inDim;
            _segmentCount = 0; _units = 0;
            Array.Clear(_formatUsed);
            _infoUsed = false;
            _normSource = null; _normWeight = null;
            _residual = null;
            _swiGlu = false;
        }

        /// <summary>The input rows are RmsNorm(source row) * weight, written into x by the job itself.</summary>
        public void NormalizeInput(float* source, float* weight, float eps)
        {
            _normSource = source; _normWeight = weight; _normEps = eps;
        }

        public void Add(Tensor w, float* y, int outDim, float* bias = null)
        {
            if (_segmentCount == MaxSegments) throw new InvalidOperationException($"a fused matmul has at most {MaxSegments} weights");
            if (w.RowLength != _in) throw new ArgumentException($"fused matmul: '{w.Name}' has rows of {w.RowLength}, the input {_in}");
            ref var s = ref _segments[_segmentCount++];
            s.Weight = w; s.Output = y; s.OutDim = outDim; s.FirstUnit = _units; s.Bias = bias;
            s.Tile = KernelTile(w.Type, out s.Format);
            s.Packed = WeightRepacker.Find(w); // float weights too: FloatPanelKernels
            // Packed Q4_1 / Q5_1 take Q8_0 activations and their exact level sums, not Q8_1 (RepackKernels).
            if (s.Packed != null && RepackedMatrix.HasMin(w.Type)) s.Format = ActivationFormat.Q8_0;
            if (s.Tile != null && _in % ActivationQuantizer.BlockSize(s.Format) != 0) s.Tile = null; // cannot happen for valid tensors
            if (s.Tile != null) _formatUsed[(int)s.Format] = true;
            s.HalvesFinite = _n == 1 && s.Packed == null && w.HalvesAllFinite;
            if (s.Packed != null && s.Tile != null && s.Format == ActivationFormat.Q8_0) _infoUsed = true;
            _units += UnitsOf(outDim);
        }

        /// <summary>The single weight's output rows are added into <paramref name="residual"/> (same shape) as they
        /// are computed: residual += x W^T.</summary>
        public void AddInto(float* residual)
        {
            if (_segmentCount != 1) throw new InvalidOperationException("a residual add follows a single weight");
            _residual = residual;
        }

        /// <summary>The two weights are gate and up of a gated FFN: gate's output becomes silu(gate) * up.</summary>
        public void ApplySwiGlu()
        {
            if (_segmentCount != 2 || _segments[0].OutDim != _segments[1].OutDim)
                throw new InvalidOperationException("SwiGlu pairs two weights of the same height");
            _swiGlu = true;
        }

        private static int UnitsOf(int outDim) => (outDim + RowsPerUnit - 1) / RowsPerUnit;

        public void Run(WorkerPool pool)
        {
            try
            {
                long start = pool.Profiling ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                bool copies = false; // the prepare phase writes the input in the weights' formats
                for (int f = 0; f < FormatCount; f++)
                {
                    _quantizedRows[f] = null;
                    if (_formatUsed[f]) { ReserveQuantized((ActivationFormat)f); copies = true; }
                }
                _floatRows = null;
                if (HasFloatPrefill(packedOnly: true)) { ReserveFloatInput(); copies = true; }
                bool byRows = _n >= RowPreparationMinRows;
                if (_normSource != null && !byRows)
                {
                    // A row's norm reduces over the whole row in one order: with few rows it is cheaper done here
                    // than split, and the pieces then only quantize.
                    for (int t = 0; t < _n; t++) RmsNorm.Apply(_normSource + (long)t * _in, _normWeight, _x + (long)t * _in, _in, _normEps);
                    _normSource = null;
                }
                _piecesPerRow = byRows ? 1 : (_in + PieceFloats - 1) / PieceFloats;
                _prepareItems = copies ? _n * _piecesPerRow : _normSource != null ? _n : 0;
                long before = pool.FirstPhaseTicks;
                if (pool.Profiling) QuantizeTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;

                int threads = pool.ThreadCount;
                if (_scratch.Length < threads) Array.Resize(ref _scratch, threads);
                int workUnits = _swiGlu ? UnitsOf(_segments[0].OutDim) : _units;
                // Small final chunks: the threads finish within a few units of each other (at most 16: the output
                // head has ~9500). The float prefill path converts FloatUnitsPerGroup units at a time, so its chunks
                // should not be smaller.
                int minGrain = Math.Max(Math.Min(workUnits / (threads * 64), 16), HasFloatPrefill() ? FloatUnitsPerGroup : 1);
                pool.RunGuided(this, _prepareItems + workUnits, minGrain, _prepareItems);
                if (pool.Profiling) QuantizeTicks += pool.FirstPhaseTicks - before;
            }
            finally
            {
                for (int i = 0; i < _segmentCount; i++) _segments[i] = default;
                _x = null; _normSource = null; _normWeight = null; _residual = null;
            }
        }

        private void ReserveFloatInput()
        {
            _floatStride = FloatPanelKernels.InputStride(_in);
            long need = (long)_n * _floatStride * sizeof(float);
            if (_floatInput is null || _floatInput.Length < need)
            {
                _floatInput?.Dispose();
                _floatInput = new Tensors.NativeBuffer(need);
            }
            _floatRows = (float*)_floatInput.Pointer;
        }

        /// <summary>Whether a float weight (only packed ones if <paramref name="packedOnly"/>) runs the prefill tile.</summary>
        private bool HasFloatPrefill(bool packedOnly = false)
        {
            if (_n == 1) return false;
            for (int i = 0; i < _segmentCount; i++)
                if (_segments[i].Tile == null && (!packedOnly || _segments[i].Packed != null)) return true;
            return false;
        }

        /// <summary>Frees the quantized-input and per-worker scratch (the pool is being disposed).</summary>
        public void Dispose()
        {
            for (int f = 0; f < FormatCount; f++)
            {
                _quantized[f]?.Dispose();
                _quantized[f] = null;
            }
            _activationInfo?.Dispose();
            _activationInfo = null;
            _floatInput?.Dispose();
            _floatInput = null;
            for (int i = 0; i < _scratch.Length; i++)
            {
                _scratch[i]?.Dispose();
                _scratch[i] = null;
            }
        }

        private void ReserveQuantized(ActivationFormat format)
        {
            long rowBytes = ActivationQuantizer.RowBytes(format, _in);
            long need = rowBytes * _n;
            ref var buffer = ref _quantized[(int)format];
            if (buffer is null || buffer.Length < need)
            {
                buffer?.Dispose();
                buffer = new Tensors.NativeBuffer(need);
            }
            _quantizedRows[(int)format] = buffer.Pointer;
            _quantizedStride[(int)format] = rowBytes;
            if (format == ActivationFormat.Q8_0)
            {
                _info = null;
                if (!_infoUsed) return;
                long infoNeed = (long)_n * InfoStride(_in);
                if (_activationInfo is null || _activationInfo.Length < infoNeed)
                {
                    _activationInfo?.Dispose();
                    _activationInfo = new Tensors.NativeBuffer(infoNeed);
                }
                _info = _activationInfo.Pointer;
            }
        }

        public void Execute(int begin, int end, int worker)
        {
            // The pool never hands out a chunk across the end of the preparation phase.
            if (begin < _prepareItems)
            {
                for (int item = begin; item < end; item++) Prepare(item);
                return;
            }
            int beginUnit = begin - _prepareItems, endUnit = end - _prepareItems;
            if (_swiGlu)
            {
                ref var gate = ref _segments[0];
                ref var up = ref _segments[1];
                ExecuteSegment(ref gate, beginUnit, endUnit, worker);
                ExecuteSegment(ref up, beginUnit, endUnit, worker);
                int r0 = beginUnit * RowsPerUnit, r1 = Math.Min(endUnit * RowsPerUnit, gate.OutDim);
                // r0 is a multiple of 16, so the vector kernel's lanes and scalar tail fall on the same features as
                // in a whole-row call.
                for (int t = 0; t < _n; t++)
                {
                    long row = (long)t * gate.OutDim;
                    SwiGlu.Apply(gate.Output + row + r0, up.Output + row + r0, r1 - r0);
                }
                return;
            }
            for (int si = 0; si < _segmentCount; si++)
            {
                ref var s = ref _segments[si];
                int from = Math.Max(beginUnit, s.FirstUnit) - s.FirstUnit;
                int to = Math.Min(endUnit, s.FirstUnit + UnitsOf(s.OutDim)) - s.FirstUnit;
                if (from >= to) continue;
                ExecuteSegment(ref s, from, to, worker);
                if (s.Bias == null && _residual == null) continue;
                int r0 = from * RowsPerUnit, rows = Math.Min(to * RowsPerUnit, s.OutDim) - r0;
                for (int t = 0; t < _n; t++)
                {
                    float* y = s.Output + (long)t * s.OutDim + r0;
                    if (s.Bias != null) Elementwise.Add(y, s.Bias + r0, rows);
                    if (_residual != null) Elementwise.Add(_residual + (long)t * s.OutDim + r0, y, rows);
                }
            }
        }

        /// <summary>Input row item / piecesPerRow, piece item % piecesPerRow: normalized (whole rows only), quantized and
        /// copied for the float prefill.</summary>
        private void Prepare(int item)
        {
            int t = item / _piecesPerRow, piece = item % _piecesPerRow;
            float* x = _x + (long)t * _in;
            if (_normSource != null) RmsNorm.Apply(_normSource + (long)t * _in, _normWeight, x, _in, _normEps);
            int first = piece * PieceFloats, count = _piecesPerRow == 1 ? _in : Math.Min(PieceFloats, _in - first);
            if (_floatRows != null) new ReadOnlySpan<float>(x + first, count).CopyTo(new Span<float>(_floatRows + (long)t * _floatStride + first, count));
            for (int f = 0; f < FormatCount; f++)
            {
                byte* rows = _quantizedRows[f];
                if (rows == null) continue;
                var format = (ActivationFormat)f;
                int blockSize = ActivationQuantizer.BlockSize(format);
                byte* output = rows + t * _quantizedStride[f] + (long)(first / blockSize) * ActivationQuantizer.BlockBytes(format);
                ActivationQuantizer.RowUnchecked(format, x + first, output, count);
                if (format == ActivationFormat.Q8_0 && _info != null)
                    RepackKernels.ActivationInfoRow(output, count / 32, _info + t * InfoStride(_in) + (long)(first / 32) * RepackKernels.ActivationInfoBytes);
            }
        }

        private void ExecuteSegment(ref Segment s, int from, int to, int worker)
        {
            if (s.Packed != null && s.Tile != null) ExecutePacked(ref s, from, to);
            else if (s.Tile != null) ExecuteQuantized(ref s, from, to);
            else ExecuteFloat(ref s, from, to, worker);
        }

        private void ExecuteQuantized(ref Segment s, int fromUnit, int toUnit)
        {
            var w = s.Weight;
            long wStride = w.RowStride;
            long xStride = _quantizedStride[(int)s.Format];
            byte* xq = _quantizedRows[(int)s.Format];
            int outDim = s.OutDim, n = _n, k = _in;
            var tile = s.Tile;
            for (int t0 = 0; t0 < n; t0 += TokensPerChunk)
            {
                int cols = Math.Min(TokensPerChunk, n - t0);
                for (int u = fromUnit; u < toUnit; u++)
                {
                    int r0 = u * RowsPerUnit;
                    int rows = Math.Min(RowsPerUnit, outDim - r0);
                    tile(w.Data + r0 * wStride, wStride, rows, xq + t0 * xStride, xStride, cols, k, s.Output + (long)t0 * outDim + r0, outDim);
                }
            }
        }

        private static long InfoStride(int k) => (long)(k / 32) * RepackKernels.ActivationInfoBytes;

        private void ExecutePacked(ref Segment s, int fromUnit, int toUnit)
        {
            var m = s.Packed!;
            long xStride = _quantizedStride[(int)s.Format], infoStride = InfoStride(_in);
            bool kQuant = s.Format == ActivationFormat.Q8_K;
            byte* xq = _quantizedRows[(int)s.Format], info = kQuant ? null : _info;
            int outDim = s.OutDim, n = _n;
            const int panelsPerUnit = RowsPerUnit / RepackedMatrix.PanelRows;
            for (int t0 = 0; t0 < n; t0 += TokensPerChunk)
            {
                int cols = Math.Min(TokensPerChunk, n - t0);
                // The whole run of units in one call (the kernels walk panels in the same order): decode of a wide
                // output head is otherwise thousands of small calls per token.
                int r0 = fromUnit * RowsPerUnit;
                int panels = (Math.Min(toUnit * RowsPerUnit, outDim) - r0) / RepackedMatrix.PanelRows;
                byte* first = m.Data + fromUnit * panelsPerUnit * m.PanelStride;
                float* y = s.Output + (long)t0 * outDim + r0;
                if (kQuant) KPanelKernels.Tile(m, first, panels, xq + t0 * xStride, xStride, cols, y, outDim);
                else RepackKernels.Tile(m, first, panels, xq + t0 * xStride, xStride, info + t0 * infoStride, infoStride, cols, y, outDim);
            }
        }

        private void ExecuteFloat(ref Segment s, int fromUnit, int toUnit, int worker)
        {
            var w = s.Weight;
            long stride = w.RowStride;
            int outDim = s.OutDim, n = _n, k = _in;
            // Converted rows and parked accumulators; grows only when a larger shape is seen.
            long need = s.Packed != null
                ? FloatPanelKernels.ScratchFloats(RowsPerUnit * FloatUnitsPerGroup / RepackedMatrix.PanelRows, k)
                : FloatGemm.ScratchFloats(RowsPerUnit * FloatUnitsPerGroup, Math.Min(n, FloatTokensPerChunk), k);
            var scratch = _scratch[worker];
            if (scratch == null || scratch.Length < need * sizeof(float))
            {
                scratch?.Dispose();
                _scratch[worker] = scratch = new Tensors.NativeBuffer(checked(need * sizeof(float)));
            }
            float* buffer = (float*)scratch.Pointer;
            if (s.Packed is { } packed)
            {
                // Units are whole panels (RowsPerUnit is a multiple of the panel height, outDim of the packed rows).
                int first = fromUnit * RowsPerUnit, end = Math.Min(toUnit * RowsPerUnit, outDim);
                const int rowsPerPanel = RepackedMatrix.PanelRows;
                if (n == 1)
                {
                    FloatPanelKernels.Decode(packed, first / rowsPerPanel, (end - first) / rowsPerPanel, _x, s.Output + first);
                    return;
                }
                for (int r0 = first; r0 < end; r0 += RowsPerUnit * FloatUnitsPerGroup)
                {
                    int rows = Math.Min(RowsPerUnit * FloatUnitsPerGroup, end - r0);
                    FloatPanelKernels.Prefill(packed, r0 / rowsPerPanel, rows / rowsPerPanel, _floatRows, _floatStride, n, s.Output + r0, outDim, buffer);
                }
                return;
            }
            if (n == 1 && FloatGemm.HasDecodeKernel(w.Type))
            {
                // The whole share at once: its rows are read as long sequential streams.
                int first = fromUnit * RowsPerUnit, end = Math.Min(toUnit * RowsPerUnit, outDim);
                FloatGemm.Decode(w.Type, w.Data + first * stride, stride, end - first, _x, k, s.Output + first, buffer, s.HalvesFinite);
                return;
            }
            for (int u = fromUnit; u < toUnit; u += FloatUnitsPerGroup)
            {
                int r0 = u * RowsPerUnit;
                int rows = Math.Min(Math.Min(toUnit - u, FloatUnitsPerGroup) * RowsPerUnit, outDim - r0);
                FloatGemm.Unit(w.Type, w.Data + r0 * stride, stride, rows, _x, n, k, FloatTokensPerChunk, s.Output + r0, outDim, buffer);
            }
        }
    }

    /// <summary>The plain definition (dequantize each row, dot in order): the reference for tests.</summary>
    public static void ComputeScalar(Tensor w, ReadOnlySpan<float> x, Span<float> y, int n)
    {
        int inDim = w.RowLength, outDim = checked((int)w.RowCount);
        var row = new float[inDim];
        for (int r = 0; r < outDim; r++)
        {
            Tensors.Quantization.Dequantize.Row(w.Type, w.Row(r), row);
            for (int t = 0; t < n; t++)
            {
                float sum = 0;
                for (int i = 0; i < inDim; i++) sum += row[i] * x[t * inDim + i];
                y[t * outDim + r] = sum;
            }
        }
    }
}
