using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Q4_K weights x Q8_K activations (ggml_vec_dot_q4_K_q8_K). block_q4_K { half d; half dmin; u8 scales[12];
/// u8 qs[128] }: each 32 bytes of qs hold two 32-value sub-blocks (low nibbles, then high nibbles),
/// value = d * sc * q - dmin * m with one 6-bit scale and min per 32 values.
/// </summary>
public unsafe struct Q4_KKernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q4_K;
    public static ActivationFormat Activation => ActivationFormat.Q8_K;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        KQuantDot<Q4_KFormat>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => KQuantDot<Q4_KFormat>.DotScalar(w, x, k);
}

internal unsafe struct Q4_KFormat : IKQuantFormat
{
    private const int ScalesOffset = 4;
    private const int QuantsOffset = 16;

    public static GgmlType Type => GgmlType.Q4_K;
    public static int BlockBytes => 144;
    public static bool HasMin => true;
    public static int OffsetShift => 0;
    public static int DeltaOffset => 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, out Vector128<sbyte> scales, out Vector128<sbyte> bsumFactors) =>
        KQuant.ScalesK4(block + ScalesOffset, out scales, out bsumFactors);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Levels256(byte* block, int j) => KQuant.Nibbles256(block + QuantsOffset + 32 * (j >> 1), (j & 1) != 0);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, int j, out Vector128<sbyte> low, out Vector128<sbyte> high) =>
        KQuant.Nibbles128(block + QuantsOffset + 32 * (j >> 1), (j & 1) != 0, out low, out high);

    public static void ReferenceBlock(byte* block, sbyte* levels, int* scales, int* mins)
    {
        byte* qs = block + QuantsOffset;
        for (int chunk = 0; chunk < 4; chunk++, qs += 32)
        {
            for (int l = 0; l < 32; l++) levels[64 * chunk + l] = (sbyte)(qs[l] & 0xF);
            for (int l = 0; l < 32; l++) levels[64 * chunk + 32 + l] = (sbyte)(qs[l] >> 4);
        }
        KQuant.ReferenceScalesK4(block + ScalesOffset, scales, mins);
    }
}
