using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Q3_K weights x Q8_K activations (ggml_vec_dot_q3_K_q8_K). block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12];
/// half d }: value = d * (sc - 32) * (q - (hmask bit ? 0 : 4)) with q in 0..3 and sixteen 6-bit scales. Seen as
/// unsigned u = q + 4 * bit in 0..7 minus the offset 4, taken back out through the Q8_K bsums.
/// </summary>
public unsafe struct Q3_KKernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q3_K;
    public static ActivationFormat Activation => ActivationFormat.Q8_K;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        KQuantDot<Q3_KFormat>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => KQuantDot<Q3_KFormat>.DotScalar(w, x, k);
}

internal unsafe struct Q3_KFormat : IKQuantFormat
{
    private const int QuantsOffset = 32;
    private const int ScalesOffset = 96;

    public static GgmlType Type => GgmlType.Q3_K;
    public static int BlockBytes => 110;
    public static bool HasMin => false;
    public static int OffsetShift => 2;
    public static int DeltaOffset => 108;

    /// <summary>The 16 scales minus 32, in value order (ggml's kmask unpacking of the 12 bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> SignedScales(byte* packed)
    {
        const uint kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
        uint a0 = Unsafe.ReadUnaligned<uint>(packed), a1 = Unsafe.ReadUnaligned<uint>(packed + 4), a2 = Unsafe.ReadUnaligned<uint>(packed + 8);
        var unpacked = Vector128.Create(
            (a0 & kmask2) | ((a2 & kmask1) << 4),
            (a1 & kmask2) | (((a2 >> 2) & kmask1) << 4),
            ((a0 >> 4) & kmask2) | (((a2 >> 4) & kmask1) << 4),
            ((a1 >> 4) & kmask2) | (((a2 >> 6) & kmask1) << 4));
        return unpacked.AsSByte() - Vector128.Create((sbyte)32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, out Vector128<sbyte> scales, out Vector128<sbyte> bsumFactors)
    {
        bsumFactors = SignedScales(block + ScalesOffset);
        scales = Vector128.Shuffle(bsumFactors, Vector128.Create((sbyte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    }

    /// <summary>Sub-block j: bits 2(j mod 4) of the 32 qs bytes of half j / 4, plus bit j of hmask as 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels256(byte* block, int j)
    {
        var low = KQuant.MoveBits(Vector256.Load(block + QuantsOffset + 32 * (j >> 2)), 2 * (j & 3), 0) & Vector256.Create((byte)3);
        return low | (KQuant.MoveBits(Vector256.Load(block), j, 2) & Vector256.Create((byte)4));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, int j, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        byte* qs = block + QuantsOffset + 32 * (j >> 2);
        int shift = 2 * (j & 3);
        var three = Vector128.Create((byte)3);
        var four = Vector128.Create((byte)4);
        var q0 = Vector128.ShiftRightLogical(Vector128.Load(qs), shift) & three;
        var q1 = Vector128.ShiftRightLogical(Vector128.Load(qs + 16), shift) & three;
        var h0 = Vector128.ShiftLeft(Vector128.ShiftRightLogical(Vector128.Load(block), j) & Vector128<byte>.One, 2);
        var h1 = Vector128.ShiftLeft(Vector128.ShiftRightLogical(Vector128.Load(block + 16), j) & Vector128<byte>.One, 2);
        low = (q0 | (h0 & four)).AsSByte();
        high = (q1 | (h1 & four)).AsSByte();
    }

    public static void ReferenceBlock(byte* block, sbyte* levels, int* scales, int* mins)
    {
        byte* hm = block;
        for (int half = 0; half < 2; half++)
        {
            byte* qs = block + QuantsOffset + 32 * half;
            for (int j = 0; j < 4; j++)
            {
                int m = 1 << (4 * half + j);
                for (int l = 0; l < 32; l++)
                    levels[128 * half + 32 * j + l] = (sbyte)(((qs[l] >> (2 * j)) & 3) - ((hm[l] & m) != 0 ? 0 : 4));
            }
        }
        var signed = SignedScales(block + ScalesOffset);
        for (int g = 0; g < 16; g++)
        {
            scales[g] = signed.GetElement(g);
            mins[g] = 0;
        }
    }
}
