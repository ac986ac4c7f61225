using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels;

/// <summary>
/// y = x W^T for a weight of any type: y[t, r] = dot(W.Row(r), x[t]). Rows are processed in groups of four:
/// a group is dequantized once into per-thread scratch (F32 is read straight from the mapped memory) and dotted
/// with all n input rows, so prefill reuses each weight row across tokens. Groups are the unit of work, so every
/// output is computed by the same kernel in the same order whatever the thread count.
/// </summary>
public static unsafe class MatMul
{
    internal const int RowsPerGroup = 4;

    /// <param name="x">n input rows of w.RowLength floats, row-major.</param>
    /// <param name="y">n output rows of w.RowCount floats, row-major.</param>
    public static void Compute(Tensor w, ReadOnlySpan<float> x, Span<float> y, int n, WorkerPool pool)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(pool);
        int inDim = w.RowLength;
        long outRows = w.RowCount;
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"row count {n} is negative");
        if (outRows > int.MaxValue) throw new ArgumentException($"tensor '{w.Name}' has too many rows ({outRows}) for a matmul");
        int outDim = (int)outRows;
        if (x.Length < (long)n * inDim) throw new ArgumentException($"matmul with '{w.Name}': input has {x.Length} floats, {(long)n * inDim} needed");
        if (y.Length < (long)n * outDim) throw new ArgumentException($"matmul with '{w.Name}': output has {y.Length} floats, {(long)n * outDim} needed");
        if (n == 0) return;

        var job = pool.MatMulJob;
        fixed (float* px = x, py = y)
        {
            job.Setup(w, px, py, n, inDim, outDim, pool.ThreadCount);
            int groups = (outDim + RowsPerGroup - 1) / RowsPerGroup;
            try { pool.Run(job, groups, pool.GrainFor(groups)); }
            finally { job.Clear(); }
        }
    }

    /// <summary>The job object, one per pool so that dispatch allocates nothing.</summary>
    internal sealed class Job : IRangeJob
    {
        private Tensor? _w;
        private float* _x, _y;
        private int _n, _in, _out;
        private float[][] _scratch = [];

        public void Setup(Tensor w, float* x, float* y, int n, int inDim, int outDim, int threads)
        {
            _w = w; _x = x; _y = y; _n = n; _in = inDim; _out = outDim;
            if (_scratch.Length < threads) Array.Resize(ref _scratch, threads);
        }

        public void Clear() { _w = null; _x = null; _y = null; }

        public void Execute(int beginGroup, int endGroup, int worker)
        {
            var w = _w!;
            int inDim = _in, outDim = _out, n = _n;
            float* x = _x, y = _y;
            GgmlType type = w.Type;
            long stride = w.RowStride;
            bool direct = type == GgmlType.F32;
            // Only taken when Dot.Compute4 would use Dot4x256, so both paths give identical bits.
            bool fusedHalf = type == GgmlType.F16 && n == 1 && !Vector512.IsHardwareAccelerated && Vector256.IsHardwareAccelerated && Avx2.IsSupported;
            float[]? scratch = null;
            if (!direct)
            {
                scratch = _scratch[worker];
                if (scratch == null || scratch.Length < RowsPerGroup * inDim)
                    _scratch[worker] = scratch = new float[RowsPerGroup * inDim];
            }
            float* sums = stackalloc float[RowsPerGroup];
            fixed (float* s = scratch)
            {
                for (int g = beginGroup; g < endGroup; g++)
                {
                    int r0 = g * RowsPerGroup;
                    int rows = Math.Min(RowsPerGroup, outDim - r0);
                    float* p0, p1, p2, p3;
                    if (fusedHalf && rows == RowsPerGroup)
                    {
                        var h0 = (ushort*)(w.Data + r0 * stride);
                        Dot.Dot4Half256(h0, h0 + inDim, h0 + 2 * inDim, h0 + 3 * inDim, x, inDim, sums);
                        y[r0] = sums[0]; y[r0 + 1] = sums[1]; y[r0 + 2] = sums[2]; y[r0 + 3] = sums[3];
                        continue;
                    }
                    if (direct)
                    {
                        p0 = (float*)(w.Data + r0 * stride);
                    }
                    else
                    {
                        for (int k = 0; k < rows; k++)
                            RowConvert.RowUnchecked(type, w.Data + (r0 + k) * stride, stride, s + k * inDim, inDim);
                        p0 = s;
                    }
                    long step = direct ? stride / sizeof(float) : inDim;
                    if (rows == RowsPerGroup)
                    {
                        p1 = p0 + step; p2 = p1 + step; p3 = p2 + step;
                        for (int t = 0; t < n; t++)
                        {
                            Dot.Compute4(p0, p1, p2, p3, x + (long)t * inDim, inDim, sums);
                            float* yt = y + (long)t * outDim + r0;
                            yt[0] = sums[0]; yt[1] = sums[1]; yt[2] = sums[2]; yt[3] = sums[3];
                        }
                    }
                    else
                    {
                        for (int k = 0; k < rows; k++)
                            for (int t = 0; t < n; t++)
                                y[(long)t * outDim + r0 + k] = Dot.Compute(p0 + k * step, x + (long)t * inDim, inDim);
                    }
                }
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
