using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Q5_K weights x Q8_K activations (ggml_vec_dot_q5_K_q8_K). block_q5_K { half d; half dmin; u8 scales[12];
/// u8 qh[32]; u8 qs[128] }: Q4_K plus a fifth bit per value (bit j of qh[l] for value l of sub-block j).
/// </summary>
public unsafe struct Q5_KKernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q5_K;
    public static ActivationFormat Activation => ActivationFormat.Q8_K;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        KQuantDot<Q5_KFormat>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => KQuantDot<Q5_KFormat>.DotScalar(w, x, k);
}

internal unsafe struct Q5_KFormat : IKQuantFormat
{
    private const int ScalesOffset = 4;
    private const int HighBitsOffset = 16;
    private const int QuantsOffset = 48;

    public static GgmlType Type => GgmlType.Q5_K;
    public static int BlockBytes => 176;
    public static bool HasMin => true;
    public static int OffsetShift => 0;
    public static int DeltaOffset => 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, out Vector128<sbyte> scales, out Vector128<sbyte> bsumFactors) =>
        KQuant.ScalesK4(block + ScalesOffset, out scales, out bsumFactors);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels256(byte* block, int j)
    {
        Vector256<byte> fifth = KQuant.MoveBits(Vector256.Load(block + HighBitsOffset), j, 4) & Vector256.Create((byte)0x10);
        return KQuant.Nibbles256(block + QuantsOffset + 32 * (j >> 1), (j & 1) != 0) | fifth;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, int j, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        KQuant.Nibbles128(block + QuantsOffset + 32 * (j >> 1), (j & 1) != 0, out low, out high);
        var bit = Vector128.Create((byte)0x10);
        low |= (Vector128.ShiftLeft(Vector128.ShiftRightLogical(Vector128.Load(block + HighBitsOffset), j), 4) & bit).AsSByte();
        high |= (Vector128.ShiftLeft(Vector128.ShiftRightLogical(Vector128.Load(block + HighBitsOffset + 16), j), 4) & bit).AsSByte();
    }

    public static void ReferenceBlock(byte* block, sbyte* levels, int* scales, int* mins)
    {
        byte* qs = block + QuantsOffset;
        byte* qh = block + HighBitsOffset;
        int mask = 1;
        for (int chunk = 0; chunk < 4; chunk++, qs += 32, mask <<= 2)
        {
            for (int l = 0; l < 32; l++) levels[64 * chunk + l] = (sbyte)((qs[l] & 0xF) + ((qh[l] & mask) != 0 ? 16 : 0));
            for (int l = 0; l < 32; l++) levels[64 * chunk + 32 + l] = (sbyte)((qs[l] >> 4) + ((qh[l] & (mask << 1)) != 0 ? 16 : 0));
        }
        KQuant.ReferenceScalesK4(block + ScalesOffset, scales, mins);
    }
}
