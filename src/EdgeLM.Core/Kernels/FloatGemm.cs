using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels;

/// <summary>
/// Float-weight matmul (F32, F16, BF16, and types without an integer kernel dequantized to float):
/// y[t, r] = dot(w_r, x_t) for one unit of weight rows.
/// <para>Exactness: every output is one Count-lane accumulator over k in ascending steps, reduced once with
/// <c>Sum</c>, plus the k % Count tail added in order. The decode kernel (<see cref="Rows4"/>, converting in registers),
/// the blocked prefill tile (<see cref="Kernel4x3"/>, accumulators parked in scratch between k blocks, which stores
/// them exactly) and the edge paths all follow that order, so an output has the same bits whatever n, the thread
/// count or its place in a tile.</para>
/// </summary>
internal static unsafe class FloatGemm
{
    /// <summary>
    /// Most k values per pass of the prefill tile: a quad's 4 rows of a pass (at most 16 KB) stay in L1 while the
    /// token triples stream past from L2. k is cut into even passes, so k = 896 is one pass and needs no parking.
    /// </summary>
    internal const int DepthBlock = 1024;

    /// <summary>
    /// Weight rows one <see cref="Tile{TL}"/> call covers: a whole group of converted rows, so each pass's slice of a
    /// token chunk is read into L2 once and reused by 16 quads (with 16-row tiles the down projection, k = 4864,
    /// re-read its 66-token chunk of 1.3 MB from L3 for every 16 rows: +10% measured on it, +5% on gate/up).
    /// Bounds the parked accumulators: rows x tokens x 64 B.
    /// </summary>
    internal const int RowsPerTile = 64;

    /// <summary>
    /// Floats of per-worker scratch <see cref="Unit"/> needs: the converted rows and the parked accumulators of one
    /// tile (at most 16 lanes each).
    /// </summary>
    public static long ScratchFloats(int rows, int tokens, int k) => (long)rows * k + (long)Math.Min(rows, RowsPerTile) * tokens * 16;

    /// <summary>
    /// Rows [0, rows) of w (row stride in bytes) against tokens [0, n) of x (n rows of k floats):
    /// y[t * yStride + r]. scratch holds <see cref="ScratchFloats"/>(rows, min(n, tokensPerChunk), k) floats.
    /// </summary>
    public static void Unit(GgmlType type, byte* w, long wStride, int rows, float* x, int n, int k, int tokensPerChunk, float* y, long yStride, float* scratch)
    {
        if (Vector512.IsHardwareAccelerated) Unit<Lanes512>(type, w, wStride, rows, x, n, k, tokensPerChunk, y, yStride, scratch);
        else if (Vector256.IsHardwareAccelerated) Unit<Lanes256>(type, w, wStride, rows, x, n, k, tokensPerChunk, y, yStride, scratch);
        else if (Vector128.IsHardwareAccelerated) Unit<Lanes128>(type, w, wStride, rows, x, n, k, tokensPerChunk, y, yStride, scratch);
        else UnitScalar(type, w, wStride, rows, x, n, k, tokensPerChunk, y, yStride, scratch);
    }

    /// <summary>
    /// Prefill loop order: the rows are converted once, then each token chunk is swept by every
    /// <see cref="RowsPerTile"/>-row tile (one per group) before the next chunk is touched, so a chunk of x (33
    /// tokens of k = 896: 118 KB) is read from L3 once per call and reused from L2 by all the rows' quads, instead of
    /// the whole input streaming from L3 once per few rows.
    /// </summary>
    internal static void Unit<TL>(GgmlType type, byte* w, long wStride, int rows, float* x, int n, int k, int tokensPerChunk, float* y, long yStride, float* scratch)
        where TL : struct, IFloatLanes<TL>
    {
        if (n == 1 && HasDecodeKernel(type))
        {
            // Decode: each weight row is used once, so convert in registers rather than through scratch.
            Decode<TL>(type, w, wStride, rows, x, k, y, scratch, halvesFinite: false);
            return;
        }
        float* panel;
        long panelStride;
        if (type == GgmlType.F32) { panel = (float*)w; panelStride = wStride / sizeof(float); }
        else
        {
            panel = scratch;
            panelStride = k;
            for (int r = 0; r < rows; r++) ConvertRow<TL>(type, w + r * wStride, wStride, panel + (long)r * k, k);
        }
        float* partials = scratch + (long)rows * k;
        for (int t0 = 0; t0 < n; t0 += tokensPerChunk)
        {
            int cols = Math.Min(tokensPerChunk, n - t0);
            for (int r0 = 0; r0 < rows; r0 += RowsPerTile)
                Tile<TL>(panel + r0 * panelStride, panelStride, Math.Min(RowsPerTile, rows - r0), x + (long)t0 * k, k, cols, k,
                    y + t0 * yStride + r0, yStride, partials);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ConvertRow<TL>(GgmlType type, byte* src, long rowBytes, float* dst, int k) where TL : struct, IFloatLanes<TL>
    {
        if (type == GgmlType.F16) RowConvert.HalfToSingle<TL>((ushort*)src, dst, k);
        else RowConvert.RowUnchecked(type, src, rowBytes, dst, k);
    }

    /// <summary>Whether <see cref="Decode(GgmlType, byte*, long, int, float*, int, float*, float*)"/> handles the type.</summary>
    public static bool HasDecodeKernel(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>
    /// One token against rows [0, rows) of an F32/F16/BF16 weight: y[r] = dot(w_r, x). Meant for a thread's whole
    /// share of rows at once (see <see cref="DecodeRows"/>). scratch holds 4 * k floats.
    /// </summary>
    public static void Decode(GgmlType type, byte* w, long wStride, int rows, float* x, int k, float* y, float* scratch, bool halvesFinite = false)
    {
        if (Vector512.IsHardwareAccelerated) Decode<Lanes512>(type, w, wStride, rows, x, k, y, scratch, halvesFinite);
        else if (Vector256.IsHardwareAccelerated) Decode<Lanes256>(type, w, wStride, rows, x, k, y, scratch, halvesFinite);
        else if (Vector128.IsHardwareAccelerated) Decode<Lanes128>(type, w, wStride, rows, x, k, y, scratch, halvesFinite);
        else UnitScalar(type, w, wStride, rows, x, 1, k, 1, y, 1, scratch);
    }

    /// <param name="halvesFinite">The caller knows an F16 weight holds no inf/NaN (<see cref="Tensor.HalvesAllFinite"/>),
    /// so the per-vector range check that guards the in-register conversion can be skipped.</param>
    internal static void Decode<TL>(GgmlType type, byte* w, long wStride, int rows, float* x, int k, float* y, float* scratch, bool halvesFinite)
        where TL : struct, IFloatLanes<TL>
    {
        switch (type)
        {
            case GgmlType.F32: DecodeRows<TL, F32Rows>(type, w, wStride, rows, x, k, y, scratch); return;
            case GgmlType.F16 when halvesFinite: DecodeRows<TL, FiniteF16Rows>(type, w, wStride, rows, x, k, y, scratch); return;
            case GgmlType.F16: DecodeRows<TL, F16Rows>(type, w, wStride, rows, x, k, y, scratch); return;
            case GgmlType.BF16: DecodeRows<TL, BF16Rows>(type, w, wStride, rows, x, k, y, scratch); return;
            default: throw new ArgumentException($"no float decode kernel for {type}", nameof(type));
        }
    }

    /// <summary>
    /// The rows are cut into four contiguous quarters and each quad takes one row from each quarter, so the weights
    /// are read as four long sequential streams. Quads of adjacent rows turn into four streams that restart every
    /// row: with short rows (k = 896: 28 cache lines) the hardware prefetcher never ramps up and the head and FFN
    /// gate/up ran at 2/3 of the bandwidth of the long-row down projection. Each output is still one accumulator over
    /// k in order, so the bits do not depend on the grouping.
    /// </summary>
    internal static void DecodeRows<TL, TF>(GgmlType type, byte* w, long wStride, int rows, float* x, int k, float* y, float* scratch)
        where TL : struct, IFloatLanes<TL> where TF : struct, IRowFormat
    {
        int quarter = rows / 4;
        long streamStride = quarter * wStride;
        float* quad = stackalloc float[4];
        for (int r = 0; r < quarter; r++)
        {
            byte* first = w + r * wStride;
            if (!Rows4<TL, TF>(first, streamStride, x, k, quad))
            {
                // A half inf/NaN: redo the quad from exactly converted rows (the order is the same).
                for (int i = 0; i < 4; i++) ConvertRow<TL>(type, first + i * streamStride, wStride, scratch + (long)i * k, k);
                Rows4<TL, F32Rows>((byte*)scratch, (long)k * sizeof(float), x, k, quad);
            }
            y[r] = quad[0]; y[r + quarter] = quad[1]; y[r + 2 * quarter] = quad[2]; y[r + 3 * quarter] = quad[3];
        }
        for (int r = 4 * quarter; r < rows; r++)
        {
            ConvertRow<TL>(type, w + r * wStride, wStride, scratch, k);
            y[r] = Row1<TL>(scratch, x, k);
        }
    }

    /// <summary>
    /// Four rows against one token: y[0..3]. Returns false, with y undefined, when an F16 row holds an inf/NaN
    /// (the in-register conversion is exact for finite values only).
    /// </summary>
    internal static bool Rows4<TL, TF>(byte* w, long wStride, float* x, int k, float* y)
        where TL : struct, IFloatLanes<TL> where TF : struct, IRowFormat
    {
        byte* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        TL a0 = TL.Zero, a1 = TL.Zero, a2 = TL.Zero, a3 = TL.Zero;
        TL high = TL.Zero, low = TL.Zero;
        int i = 0;
        for (; i + TL.Count <= k; i += TL.Count)
        {
            var xv = TL.Load(x + i);
            TL v0 = TF.Load<TL>(w0, i), v1 = TF.Load<TL>(w1, i), v2 = TF.Load<TL>(w2, i), v3 = TF.Load<TL>(w3, i);
            a0 = TL.MultiplyAdd(v0, xv, a0);
            a1 = TL.MultiplyAdd(v1, xv, a1);
            a2 = TL.MultiplyAdd(v2, xv, a2);
            a3 = TL.MultiplyAdd(v3, xv, a3);
            if (TF.NeedsRangeCheck)
            {
                high = TL.Max(high, TL.Max(TL.Max(v0, v1), TL.Max(v2, v3)));
                low = TL.Min(low, TL.Min(TL.Min(v0, v1), TL.Min(v2, v3)));
            }
        }
        if (TF.NeedsRangeCheck && TL.OutsideHalfRange(high, low)) return false;
        float s0 = TL.Sum(a0), s1 = TL.Sum(a1), s2 = TL.Sum(a2), s3 = TL.Sum(a3);
        for (; i < k; i++)
        {
            float xi = x[i];
            s0 += TF.Scalar(w0, i) * xi; s1 += TF.Scalar(w1, i) * xi; s2 += TF.Scalar(w2, i) * xi; s3 += TF.Scalar(w3, i) * xi;
        }
        y[0] = s0; y[1] = s1; y[2] = s2; y[3] = s3;
        return true;
    }

    /// <summary>One float row against one token (rows left over from quads).</summary>
    internal static float Row1<TL>(float* w, float* x, int k) where TL : struct, IFloatLanes<TL>
    {
        var acc = TL.Zero;
        int i = 0;
        for (; i + TL.Count <= k; i += TL.Count) acc = TL.MultiplyAdd(TL.Load(w + i), TL.Load(x + i), acc);
        float sum = TL.Sum(acc);
        for (; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    /// <summary>
    /// y[c * yStride + r] = dot(w_r, x_c) for float rows. Blocks of 4 rows x 3 tokens keep 12 accumulators in
    /// registers (each weight load feeds 3 FMAs, each token load 4). Per pass of at most <see cref="DepthBlock"/> k
    /// values each quad stays in L1 while every token triple streams past (as llamafile's tinyBLAS does), the
    /// accumulators parked in partials between passes (rows * cols * TL.Count floats).
    /// </summary>
    internal static void Tile<TL>(float* w, long wStride, int rows, float* x, long xStride, int cols, int k, float* y, long yStride, float* partials)
        where TL : struct, IFloatLanes<TL>
    {
        int quads = rows / 4, triples = cols / 3;
        int kVector = k - k % TL.Count;
        const int Block = 12; // accumulators of one 4x3 block
        if (quads > 0 && triples > 0)
        {
            // Even blocks of at most DepthBlock, so k = 896 is one pass (no parking) and 4864 five of 976.
            int blocks = Math.Max(1, (kVector + DepthBlock - 1) / DepthBlock);
            int depth = (kVector / TL.Count + blocks - 1) / blocks * TL.Count;
            // The FMA kernel reduces its last pass in registers and writes y itself (when no scalar tail is left).
            bool fused = typeof(TL) == typeof(Lanes256) && Fma.IsSupported && kVector == k;
            int from = 0;
            do
            {
                int to = Math.Min(kVector, from + depth);
                bool last = to == kVector;
                for (int q = 0; q < quads; q++)
                {
                    Kernel4x3<TL>(w + 4 * q * wStride, wStride, x, xStride, triples, from, to,
                        partials + (long)q * Block * TL.Count, (long)quads * Block * TL.Count, from == 0,
                        fused && last ? y + 4 * q : null, yStride);
                }
                from = to;
            } while (from < kVector);

            if (!fused)
            {
                for (int t = 0; t < triples; t++)
                    for (int q = 0; q < quads; q++)
                    {
                        float* acc = partials + (long)(t * quads + q) * Block * TL.Count;
                        for (int c = 0; c < 3; c++)
                            for (int r = 0; r < 4; r++)
                            {
                                float* wr = w + (4 * q + r) * wStride, xc = x + (3 * t + c) * xStride;
                                float sum = TL.Sum(TL.Load(acc + (c * 4 + r) * TL.Count));
                                for (int i = kVector; i < k; i++) sum += wr[i] * xc[i];
                                y[(3 * t + c) * yStride + 4 * q + r] = sum;
                            }
                    }
            }
        }
        // Edges: tokens past the last triple by quads, rows past the last quad one at a time (same order).
        float* yq = stackalloc float[4];
        for (int c = 3 * triples; c < cols; c++)
            for (int q = 0; q < quads; q++)
            {
                Rows4<TL, F32Rows>((byte*)(w + 4 * q * wStride), wStride * sizeof(float), x + c * xStride, k, yq);
                for (int r = 0; r < 4; r++) y[c * yStride + 4 * q + r] = yq[r];
            }
        for (int r = 4 * quads; r < rows; r++)
            for (int c = 0; c < cols; c++) y[c * yStride + r] = Row1<TL>(w + r * wStride, x + c * xStride, k);
    }

    /// <summary>
    /// Accumulators of the 4x3 blocks of one quad and <paramref name="triples"/> token triples over k in [from, to)
    /// (multiples of TL.Count); triple t's block at acc + t * accStride, laid out [(c * 4 + r) * Count]. One call per
    /// quad and pass rather than per block: at ~120 steps a call, the call and loop set-up cost ~5%.
    /// </summary>
    private static void Kernel4x3<TL>(float* w, long wStride, float* x, long xStride, int triples, int from, int to, float* acc, long accStride, bool first,
        float* y, long yStride)
        where TL : struct, IFloatLanes<TL>
    {
        if (typeof(TL) == typeof(Lanes256) && Fma.IsSupported)
        {
            Kernel4x3Fma(w, wStride, x, xStride, triples, from, to, acc, accStride, first, y, yStride);
            return;
        }
        for (int t = 0; t < triples; t++, x += 3 * xStride, acc += accStride) Block4x3<TL>(w, wStride, x, xStride, from, to, acc, first);
    }

    private static void Block4x3<TL>(float* w, long wStride, float* x, long xStride, int from, int to, float* acc, bool first)
        where TL : struct, IFloatLanes<TL>
    {
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride;
        int n = TL.Count;
        TL a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23;
        if (first)
        {
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = a20 = a21 = a22 = a23 = TL.Zero;
        }
        else
        {
            a00 = TL.Load(acc); a01 = TL.Load(acc + n); a02 = TL.Load(acc + 2 * n); a03 = TL.Load(acc + 3 * n);
            a10 = TL.Load(acc + 4 * n); a11 = TL.Load(acc + 5 * n); a12 = TL.Load(acc + 6 * n); a13 = TL.Load(acc + 7 * n);
            a20 = TL.Load(acc + 8 * n); a21 = TL.Load(acc + 9 * n); a22 = TL.Load(acc + 10 * n); a23 = TL.Load(acc + 11 * n);
        }
        for (int i = from; i < to; i += TL.Count)
        {
            var c0 = TL.Load(x0 + i); var c1 = TL.Load(x1 + i); var c2 = TL.Load(x2 + i);
            var v = TL.Load(w0 + i);
            a00 = TL.MultiplyAdd(v, c0, a00); a10 = TL.MultiplyAdd(v, c1, a10); a20 = TL.MultiplyAdd(v, c2, a20);
            v = TL.Load(w1 + i);
            a01 = TL.MultiplyAdd(v, c0, a01); a11 = TL.MultiplyAdd(v, c1, a11); a21 = TL.MultiplyAdd(v, c2, a21);
            v = TL.Load(w2 + i);
            a02 = TL.MultiplyAdd(v, c0, a02); a12 = TL.MultiplyAdd(v, c1, a12); a22 = TL.MultiplyAdd(v, c2, a22);
            v = TL.Load(w3 + i);
            a03 = TL.MultiplyAdd(v, c0, a03); a13 = TL.MultiplyAdd(v, c1, a13); a23 = TL.MultiplyAdd(v, c2, a23);
        }
        TL.Store(a00, acc); TL.Store(a01, acc + n); TL.Store(a02, acc + 2 * n); TL.Store(a03, acc + 3 * n);
        TL.Store(a10, acc + 4 * n); TL.Store(a11, acc + 5 * n); TL.Store(a12, acc + 6 * n); TL.Store(a13, acc + 7 * n);
        TL.Store(a20, acc + 8 * n); TL.Store(a21, acc + 9 * n); TL.Store(a22, acc + 10 * n); TL.Store(a23, acc + 11 * n);
    }

    /// <summary>
    /// <see cref="Kernel4x3{TL}"/> on Vector256 with FMA, written without the lane wrapper: through it the JIT copies
    /// each accumulator back after a 213-form FMA (six extra moves per step with all 16 registers live), which
    /// measured ~30% slower. Same operations in the same order, so the same bits.
    /// </summary>
    private static void Kernel4x3Fma(float* w, long wStride, float* x, long xStride, int triples, int from, int to, float* acc, long accStride, bool first,
        float* y, long yStride)
    {
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        for (int t = 0; t < triples; t++, x += 3 * xStride, acc += accStride)
        {
            float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride;
            Vector256<float> a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23;
            if (first)
            {
                a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = a20 = a21 = a22 = a23 = Vector256<float>.Zero;
            }
            else
            {
                a00 = Vector256.Load(acc); a01 = Vector256.Load(acc + 8); a02 = Vector256.Load(acc + 16); a03 = Vector256.Load(acc + 24);
                a10 = Vector256.Load(acc + 32); a11 = Vector256.Load(acc + 40); a12 = Vector256.Load(acc + 48); a13 = Vector256.Load(acc + 56);
                a20 = Vector256.Load(acc + 64); a21 = Vector256.Load(acc + 72); a22 = Vector256.Load(acc + 80); a23 = Vector256.Load(acc + 88);
            }
            for (int i = from; i < to; i += 8)
            {
                var c0 = Vector256.Load(x0 + i); var c1 = Vector256.Load(x1 + i); var c2 = Vector256.Load(x2 + i);
                var v = Vector256.Load(w0 + i);
                a00 = Fma.MultiplyAdd(v, c0, a00); a10 = Fma.MultiplyAdd(v, c1, a10); a20 = Fma.MultiplyAdd(v, c2, a20);
                v = Vector256.Load(w1 + i);
                a01 = Fma.MultiplyAdd(v, c0, a01); a11 = Fma.MultiplyAdd(v, c1, a11); a21 = Fma.MultiplyAdd(v, c2, a21);
                v = Vector256.Load(w2 + i);
                a02 = Fma.MultiplyAdd(v, c0, a02); a12 = Fma.MultiplyAdd(v, c1, a12); a22 = Fma.MultiplyAdd(v, c2, a22);
                v = Vector256.Load(w3 + i);
                a03 = Fma.MultiplyAdd(v, c0, a03); a13 = Fma.MultiplyAdd(v, c1, a13); a23 = Fma.MultiplyAdd(v, c2, a23);
            }
            if (y != null)
            {
                float* yt = y + 3 * t * yStride;
                Reduce4(a00, a01, a02, a03).Store(yt);
                Reduce4(a10, a11, a12, a13).Store(yt + yStride);
                Reduce4(a20, a21, a22, a23).Store(yt + 2 * yStride);
                continue;
            }
            a00.Store(acc); a01.Store(acc + 8); a02.Store(acc + 16); a03.Store(acc + 24);
            a10.Store(acc + 32); a11.Store(acc + 40); a12.Store(acc + 48); a13.Store(acc + 56);
            a20.Store(acc + 64); a21.Store(acc + 72); a22.Store(acc + 80); a23.Store(acc + 88);
        }
    }

    /// <summary>
    /// Four accumulators (rows of one token) to their four outputs: two rounds of horizontal adds and one add of the
    /// halves give ((l0+l1)+(l2+l3)) + ((u0+u1)+(u2+u3)) per accumulator, exactly the order of Vector256.Sum (the
    /// tests compare with the decode kernel bitwise), in 4 instructions instead of 4 x 6, with the outputs adjacent.
    /// Done in registers at the end of the last pass: parking the accumulators and reducing them in a second sweep
    /// cost ~4% of prefill.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Reduce4(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3)
    {
        var sums = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        return sums.GetLower() + sums.GetUpper();
    }

    /// <summary>No SIMD: rows to float, then plain dots (decode and prefill alike, so they agree bitwise).</summary>
    internal static void UnitScalar(GgmlType type, byte* w, long wStride, int rows, float* x, int n, int k, int tokensPerChunk, float* y, long yStride, float* scratch)
    {
        for (int r = 0; r < rows; r++)
        {
            float* row;
            if (type == GgmlType.F32) row = (float*)(w + r * wStride);
            else { RowConvert.RowUnchecked(type, w + r * wStride, wStride, scratch, k); row = scratch; }
            for (int t = 0; t < n; t++) y[t * yStride + r] = Dot.DotScalar(row, x + (long)t * k, k);
        }
    }
}
