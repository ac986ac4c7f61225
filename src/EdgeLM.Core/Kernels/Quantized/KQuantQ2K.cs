using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Q2_K weights x Q8_K activations (ggml_vec_dot_q2_K_q8_K). block_q2_K { u8 scales[16]; u8 qs[64]; half d;
/// half dmin }: per 16 values one byte, scale in the low nibble and min in the high one; value = d * sc * q - dmin * m
/// with q in 0..3. Per 128 values, 32 bytes of qs hold 2 bits of each of 4 sub-blocks (sub-block j at bits 2j).
/// </summary>
public unsafe struct Q2_KKernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q2_K;
    public static ActivationFormat Activation => ActivationFormat.Q8_K;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        KQuantDot<Q2_KFormat>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => KQuantDot<Q2_KFormat>.DotScalar(w, x, k);
}

internal unsafe struct Q2_KFormat : IKQuantFormat
{
    private const int QuantsOffset = 16;

    public static GgmlType Type => GgmlType.Q2_K;
    public static int BlockBytes => 84;
    public static bool HasMin => true;
    public static int OffsetShift => 0;
    public static int DeltaOffset => 80;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, out Vector128<sbyte> scales, out Vector128<sbyte> bsumFactors)
    {
        var raw = Vector128.Load(block);
        // Scale byte g covers values 16g..16g+15: sub-block j's halves are bytes 2j and 2j + 1.
        scales = Vector128.Shuffle((raw & Vector128.Create((byte)0x0F)).AsSByte(),
            Vector128.Create((sbyte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
        bsumFactors = Vector128.ShiftRightLogical(raw, 4).AsSByte();
    }

    /// <summary>Sub-block j: bits 2(j mod 4) of the 32 qs bytes of half j / 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels256(byte* block, int j)
    {
        var bits = Vector256.Load(block + QuantsOffset + 32 * (j >> 2));
        return KQuant.MoveBits(bits, 2 * (j & 3), 0) & Vector256.Create((byte)3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, int j, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        byte* qs = block + QuantsOffset + 32 * (j >> 2);
        int shift = 2 * (j & 3);
        var mask = Vector128.Create((byte)3);
        low = (Vector128.ShiftRightLogical(Vector128.Load(qs), shift) & mask).AsSByte();
        high = (Vector128.ShiftRightLogical(Vector128.Load(qs + 16), shift) & mask).AsSByte();
    }

    public static void ReferenceBlock(byte* block, sbyte* levels, int* scales, int* mins)
    {
        for (int half = 0; half < 2; half++)
        {
            byte* qs = block + QuantsOffset + 32 * half;
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) levels[128 * half + 32 * j + l] = (sbyte)((qs[l] >> (2 * j)) & 3);
        }
        for (int g = 0; g < 16; g++)
        {
            scales[g] = block[g] & 0xF;
            mins[g] = block[g] >> 4;
        }
    }
}
