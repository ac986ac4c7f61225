using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Q6_K weights x Q8_K activations (ggml_vec_dot_q6_K_q8_K). block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16];
/// half d }: per 128 values, 64 bytes of ql (low nibbles of values l and l+32, high nibbles of l+64 and l+96) and
/// 32 bytes of qh (two bits each); value = d * sc * (q - 32) with one signed scale per 16 values. The SIMD paths
/// multiply the unsigned q and take the 32 back out through the Q8_K bsums: 32 * sum(sc * bsum).
/// </summary>
public unsafe struct Q6_KKernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q6_K;
    public static ActivationFormat Activation => ActivationFormat.Q8_K;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        KQuantDot<Q6_KFormat>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => KQuantDot<Q6_KFormat>.DotScalar(w, x, k);
}

internal unsafe struct Q6_KFormat : IKQuantFormat
{
    private const int HighBitsOffset = 128;
    private const int ScalesOffset = 192;

    public static GgmlType Type => GgmlType.Q6_K;
    public static int BlockBytes => 210;
    public static bool HasMin => false;
    public static int OffsetShift => 5;
    public static int DeltaOffset => 208;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, out Vector128<sbyte> scales, out Vector128<sbyte> bsumFactors)
    {
        bsumFactors = Vector128.Load((sbyte*)(block + ScalesOffset));
        scales = Vector128.Shuffle(bsumFactors, Vector128.Create((sbyte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    }

    /// <summary>Sub-block j = 4h + i of half h: ql bytes 32(i &amp; 1).., nibble i / 2, qh bit pair i.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels256(byte* block, int j)
    {
        int half = j >> 2, i = j & 3;
        Vector256<byte> low = KQuant.Nibbles256(block + 64 * half + 32 * (i & 1), i >= 2);
        Vector256<byte> qh = Vector256.Load(block + HighBitsOffset + 32 * half);
        return low | (KQuant.MoveBits(qh, 2 * i, 4) & Vector256.Create((byte)0x30));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, int j, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        int half = j >> 2, i = j & 3;
        KQuant.Nibbles128(block + 64 * half + 32 * (i & 1), i >= 2, out low, out high);
        var bits = Vector128.Create((byte)0x30);
        byte* qh = block + HighBitsOffset + 32 * half;
        low |= (Vector128.ShiftLeft(Vector128.ShiftRightLogical(Vector128.Load(qh), 2 * i), 4) & bits).AsSByte();
        high |= (Vector128.ShiftLeft(Vector128.ShiftRightLogical(Vector128.Load(qh + 16), 2 * i), 4) & bits).AsSByte();
    }

    public static void ReferenceBlock(byte* block, sbyte* levels, int* scales, int* mins)
    {
        for (int half = 0; half < 2; half++)
        {
            byte* ql = block + 64 * half;
            byte* qh = block + HighBitsOffset + 32 * half;
            sbyte* a = levels + 128 * half;
            for (int l = 0; l < 32; l++)
            {
                a[l] = (sbyte)(((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32);
                a[l + 32] = (sbyte)(((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32);
                a[l + 64] = (sbyte)(((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32);
                a[l + 96] = (sbyte)(((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32);
            }
        }
        for (int g = 0; g < 16; g++)
        {
            scales[g] = (sbyte)block[ScalesOffset + g];
            mins[g] = 0;
        }
    }
}
