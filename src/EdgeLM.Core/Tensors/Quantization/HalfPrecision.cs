namespace EdgeLM.Tensors.Quantization;

/// <summary>
/// The 16-bit float conversions ggml uses (ggml-impl.h): IEEE binary16 and bfloat16, both rounding to nearest even.
/// </summary>
public static class HalfPrecision
{
    /// <summary>float32 to IEEE binary16 bits, round to nearest even; every NaN becomes ggml's canonical 0x7E00 (sign kept).</summary>
    public static ushort ToF16(float value)
    {
        if (float.IsNaN(value))
            return (ushort)(((uint)BitConverter.SingleToInt32Bits(value) >> 16 & 0x8000) | 0x7E00);
        return BitConverter.HalfToUInt16Bits((Half)value);
    }

    /// <summary>IEEE binary16 bits to float32 (exact).</summary>
    public static float FromF16(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>
    /// float32 to bfloat16 bits exactly as ggml_compute_fp32_to_bf16: round to nearest even on the upper
    /// 16 bits, subnormals kept, NaNs made quiet by setting the top mantissa bit.
    /// </summary>
    public static ushort ToBf16(float value)
    {
        uint bits = (uint)BitConverter.SingleToInt32Bits(value);
        if ((bits & 0x7fffffff) > 0x7f800000)
            return (ushort)((bits >> 16) | 64);
        return (ushort)((bits + (0x7fff + ((bits >> 16) & 1))) >> 16);
    }

    /// <summary>bfloat16 bits to float32 (exact: bfloat16 is the upper half of a float32).</summary>
    public static float FromBf16(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);
}
