namespace EdgeLM.Tensors;

/// <summary>Tensor element types with the numeric ids GGUF files use (ggml.h's enum ggml_type).</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
}

public static class GgmlTypeInfo
{
    public const int QK_K = 256;

    /// <summary>Elements per block (1 for plain types).</summary>
    public static int BlockSize(GgmlType t) => t switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64
            or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64 => 1,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1 => 32,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K => QK_K,
        _ => throw new NotSupportedException($"unsupported tensor type {t}"),
    };

    /// <summary>Bytes per block, bit-compatible with ggml's block structs.</summary>
    public static int BlockBytes(GgmlType t) => t switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 => 2,
        GgmlType.BF16 => 2,
        GgmlType.F64 => 8,
        GgmlType.I8 => 1,
        GgmlType.I16 => 2,
        GgmlType.I32 => 4,
        GgmlType.I64 => 8,
        GgmlType.Q4_0 => 2 + 16,
        GgmlType.Q4_1 => 4 + 16,
        GgmlType.Q5_0 => 2 + 4 + 16,
        GgmlType.Q5_1 => 4 + 4 + 16,
        GgmlType.Q8_0 => 2 + 32,
        GgmlType.Q8_1 => 4 + 32,
        GgmlType.Q2_K => QK_K / 16 + QK_K / 4 + 2 + 2,          // scales, qs, d, dmin = 84
        GgmlType.Q3_K => QK_K / 8 + QK_K / 4 + 12 + 2,          // hmask, qs, scales, d = 110
        GgmlType.Q4_K => 2 + 2 + 12 + QK_K / 2,                 // d, dmin, scales, qs = 144
        GgmlType.Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,      // d, dmin, scales, qh, qs = 176
        GgmlType.Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,   // ql, qh, scales, d = 210
        GgmlType.Q8_K => 4 + QK_K + QK_K / 16 * 2,              // d, qs, bsums = 292
        _ => throw new NotSupportedException($"unsupported tensor type {t}"),
    };

    public static bool IsKnown(GgmlType t) => t switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64 or GgmlType.I8 or GgmlType.I16
            or GgmlType.I32 or GgmlType.I64 or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0
            or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.Q2_K or GgmlType.Q3_K
            or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K => true,
        _ => false,
    };

    /// <summary>Bytes of one row of <paramref name="n"/> elements; n must be a multiple of the block size.</summary>
    public static long RowBytes(GgmlType t, long n)
    {
        int bs = BlockSize(t);
        if (n % bs != 0)
            throw new InvalidDataException($"row length {n} is not a multiple of the {t} block size {bs}");
        return n / bs * BlockBytes(t);
    }

    public static double BitsPerWeight(GgmlType t) => 8.0 * BlockBytes(t) / BlockSize(t);

    public static string Name(GgmlType t) => t.ToString();

    public static bool TryParse(string s, out GgmlType t) => Enum.TryParse(s.Replace("-", "_"), true, out t) && IsKnown(t);
}
