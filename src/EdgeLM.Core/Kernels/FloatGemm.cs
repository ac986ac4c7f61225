using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace EdgeLM.Kernels;

/// <summary>
/// Register-blocked float GEMM tiles for F32 weights and F16/BF16 rows converted to float: y[c, r] = dot(w_r, x_c).
/// Tiles of 4 rows x 3 columns keep 12 accumulators in registers, so each loaded weight vector feeds three FMAs and
/// each activation vector four. Every output is one accumulator over k in order, reduced once, plus a scalar tail,
/// exactly like <see cref="Dot.Dot4Half256"/>; so an output has the same bits whatever the tile it falls in.
/// </summary>
internal static unsafe class FloatGemm
{
    public static void Tile(float* w, long wStride, int rows, float* x, long xStride, int cols, int k, float* y, long yStride)
    {
        if (Vector256.IsHardwareAccelerated) Tile256(w, wStride, rows, x, xStride, cols, k, y, yStride);
        else if (Vector128.IsHardwareAccelerated) Tile128(w, wStride, rows, x, xStride, cols, k, y, yStride);
        else TileScalar(w, wStride, rows, x, xStride, cols, k, y, yStride);
    }

    internal static void TileScalar(float* w, long wStride, int rows, float* x, long xStride, int cols, int k, float* y, long yStride)
    {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                y[c * yStride + r] = Dot.DotScalar(w + r * wStride, x + c * xStride, k);
    }

    internal static void Tile256(float* w, long wStride, int rows, float* x, long xStride, int cols, int k, float* y, long yStride)
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            int c = 0;
            for (; c + 3 <= cols; c += 3) Kernel4x3x256(w + r * wStride, wStride, x + c * xStride, xStride, k, y + c * yStride + r, yStride);
            for (; c < cols; c++)
                for (int i = 0; i < 4; i++) y[c * yStride + r + i] = Dot1x256(w + (r + i) * wStride, x + c * xStride, k);
        }
        for (; r < rows; r++)
            for (int c = 0; c < cols; c++) y[c * yStride + r] = Dot1x256(w + r * wStride, x + c * xStride, k);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot1x256(float* w, float* x, int k)
    {
        var acc = Vector256<float>.Zero;
        int i = 0;
        for (; i + 8 <= k; i += 8) acc = Vector256.MultiplyAddEstimate(Vector256.Load(w + i), Vector256.Load(x + i), acc);
        float sum = Vector256.Sum(acc);
        for (; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    private static void Kernel4x3x256(float* w, long wStride, float* x, long xStride, int k, float* y, long yStride)
    {
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
        int i = 0;
        for (; i + 8 <= k; i += 8)
        {
            var v0 = Vector256.Load(w0 + i); var v1 = Vector256.Load(w1 + i);
            var v2 = Vector256.Load(w2 + i); var v3 = Vector256.Load(w3 + i);
            var xv = Vector256.Load(x0 + i);
            a00 = Vector256.MultiplyAddEstimate(v0, xv, a00); a01 = Vector256.MultiplyAddEstimate(v1, xv, a01);
            a02 = Vector256.MultiplyAddEstimate(v2, xv, a02); a03 = Vector256.MultiplyAddEstimate(v3, xv, a03);
            xv = Vector256.Load(x1 + i);
            a10 = Vector256.MultiplyAddEstimate(v0, xv, a10); a11 = Vector256.MultiplyAddEstimate(v1, xv, a11);
            a12 = Vector256.MultiplyAddEstimate(v2, xv, a12); a13 = Vector256.MultiplyAddEstimate(v3, xv, a13);
            xv = Vector256.Load(x2 + i);
            a20 = Vector256.MultiplyAddEstimate(v0, xv, a20); a21 = Vector256.MultiplyAddEstimate(v1, xv, a21);
            a22 = Vector256.MultiplyAddEstimate(v2, xv, a22); a23 = Vector256.MultiplyAddEstimate(v3, xv, a23);
        }
        float* y0 = y, y1 = y + yStride, y2 = y + 2 * yStride;
        y0[0] = Vector256.Sum(a00); y0[1] = Vector256.Sum(a01); y0[2] = Vector256.Sum(a02); y0[3] = Vector256.Sum(a03);
        y1[0] = Vector256.Sum(a10); y1[1] = Vector256.Sum(a11); y1[2] = Vector256.Sum(a12); y1[3] = Vector256.Sum(a13);
        y2[0] = Vector256.Sum(a20); y2[1] = Vector256.Sum(a21); y2[2] = Vector256.Sum(a22); y2[3] = Vector256.Sum(a23);
        for (; i < k; i++)
        {
            float b0 = w0[i], b1 = w1[i], b2 = w2[i], b3 = w3[i];
            y0[0] += b0 * x0[i]; y0[1] += b1 * x0[i]; y0[2] += b2 * x0[i]; y0[3] += b3 * x0[i];
            y1[0] += b0 * x1[i]; y1[1] += b1 * x1[i]; y1[2] += b2 * x1[i]; y1[3] += b3 * x1[i];
            y2[0] += b0 * x2[i]; y2[1] += b1 * x2[i]; y2[2] += b2 * x2[i]; y2[3] += b3 * x2[i];
        }
    }

    internal static void Tile128(float* w, long wStride, int rows, float* x, long xStride, int cols, int k, float* y, long yStride)
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4)
        {
            int c = 0;
            for (; c + 3 <= cols; c += 3) Kernel4x3x128(w + r * wStride, wStride, x + c * xStride, xStride, k, y + c * yStride + r, yStride);
            for (; c < cols; c++)
                for (int i = 0; i < 4; i++) y[c * yStride + r + i] = Dot1x128(w + (r + i) * wStride, x + c * xStride, k);
        }
        for (; r < rows; r++)
            for (int c = 0; c < cols; c++) y[c * yStride + r] = Dot1x128(w + r * wStride, x + c * xStride, k);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot1x128(float* w, float* x, int k)
    {
        var acc = Vector128<float>.Zero;
        int i = 0;
        for (; i + 4 <= k; i += 4) acc = Vector128.MultiplyAddEstimate(Vector128.Load(w + i), Vector128.Load(x + i), acc);
        float sum = Vector128.Sum(acc);
        for (; i < k; i++) sum += w[i] * x[i];
        return sum;
    }

    private static void Kernel4x3x128(float* w, long wStride, float* x, long xStride, int k, float* y, long yStride)
    {
        float* w0 = w, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride;
        Vector128<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector128<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector128<float> a20 = default, a21 = default, a22 = default, a23 = default;
        int i = 0;
        for (; i + 4 <= k; i += 4)
        {
            var v0 = Vector128.Load(w0 + i); var v1 = Vector128.Load(w1 + i);
            var v2 = Vector128.Load(w2 + i); var v3 = Vector128.Load(w3 + i);
            var xv = Vector128.Load(x0 + i);
            a00 = Vector128.MultiplyAddEstimate(v0, xv, a00); a01 = Vector128.MultiplyAddEstimate(v1, xv, a01);
            a02 = Vector128.MultiplyAddEstimate(v2, xv, a02); a03 = Vector128.MultiplyAddEstimate(v3, xv, a03);
            xv = Vector128.Load(x1 + i);
            a10 = Vector128.MultiplyAddEstimate(v0, xv, a10); a11 = Vector128.MultiplyAddEstimate(v1, xv, a11);
            a12 = Vector128.MultiplyAddEstimate(v2, xv, a12); a13 = Vector128.MultiplyAddEstimate(v3, xv, a13);
            xv = Vector128.Load(x2 + i);
            a20 = Vector128.MultiplyAddEstimate(v0, xv, a20); a21 = Vector128.MultiplyAddEstimate(v1, xv, a21);
            a22 = Vector128.MultiplyAddEstimate(v2, xv, a22); a23 = Vector128.MultiplyAddEstimate(v3, xv, a23);
        }
        float* y0 = y, y1 = y + yStride, y2 = y + 2 * yStride;
        y0[0] = Vector128.Sum(a00); y0[1] = Vector128.Sum(a01); y0[2] = Vector128.Sum(a02); y0[3] = Vector128.Sum(a03);
        y1[0] = Vector128.Sum(a10); y1[1] = Vector128.Sum(a11); y1[2] = Vector128.Sum(a12); y1[3] = Vector128.Sum(a13);
        y2[0] = Vector128.Sum(a20); y2[1] = Vector128.Sum(a21); y2[2] = Vector128.Sum(a22); y2[3] = Vector128.Sum(a23);
        for (; i < k; i++)
        {
            float b0 = w0[i], b1 = w1[i], b2 = w2[i], b3 = w3[i];
            y0[0] += b0 * x0[i]; y0[1] += b1 * x0[i]; y0[2] += b2 * x0[i]; y0[3] += b3 * x0[i];
            y1[0] += b0 * x1[i]; y1[1] += b1 * x1[i]; y1[2] += b2 * x1[i]; y1[3] += b3 * x1[i];
            y2[0] += b0 * x2[i]; y2[1] += b1 * x2[i]; y2[2] += b2 * x2[i]; y2[3] += b3 * x2[i];
        }
    }
}
