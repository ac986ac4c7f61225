using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace EdgeLM.Tensors.Quantization;

/// <summary>
/// float32 to ggml block formats with llama.cpp's reference (round-to-nearest, no importance matrix) quantizers,
/// quantize_row_*_ref in ggml-quants.c. Float operations keep the C evaluation order, so the bytes are identical to
/// llama.cpp's output for the same input when it is compiled without FMA contraction (x86-64 ggml-base default).
/// </summary>
public static partial class Quantize
{
    /// <summary>Types <see cref="Row"/> can produce.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K;

    /// <summary>
    /// Quantizes all of <paramref name="src"/> (a whole number of blocks) into the first
    /// RowBytes(type, src.Length) bytes of <paramref name="dst"/>.
    /// </summary>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst)
    {
        if (!IsSupported(type)) throw new NotSupportedException($"quantization to {type} is not supported");
        int blockSize = GgmlTypeInfo.BlockSize(type);
        if (src.Length % blockSize != 0)
            throw new ArgumentException($"{type}: {src.Length} values is not a multiple of the block size {blockSize}", nameof(src));
        long need = GgmlTypeInfo.RowBytes(type, src.Length);
        if (dst.Length < need)
            throw new ArgumentException($"{type}: destination has {dst.Length} bytes, {need} needed for {src.Length} values", nameof(dst));

        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.AsBytes(src).CopyTo(dst);
                return;
            case GgmlType.F16:
                for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(dst[(2 * i)..], HalfPrecision.ToF16(src[i]));
                return;
            case GgmlType.BF16:
                for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(dst[(2 * i)..], HalfPrecision.ToBf16(src[i]));
                return;
        }

        int blockBytes = GgmlTypeInfo.BlockBytes(type);
        int blocks = src.Length / blockSize;
        // One scratch buffer for the per-block level arrays of every k-quant (at most QK_K levels plus 32 aux).
        Span<byte> levels = stackalloc byte[GgmlTypeInfo.QK_K];
        Span<byte> auxLevels = stackalloc byte[32];
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * blockSize, blockSize);
            Span<byte> y = dst.Slice(b * blockBytes, blockBytes);
            switch (type)
            {
                case GgmlType.Q4_0: BlockQ4_0(x, y); break;
                case GgmlType.Q4_1: BlockQ4_1(x, y); break;
                case GgmlType.Q5_0: BlockQ5_0(x, y); break;
                case GgmlType.Q5_1: BlockQ5_1(x, y); break;
                case GgmlType.Q8_0: BlockQ8_0(x, y); break;
                case GgmlType.Q8_1: BlockQ8_1(x, y); break;
                case GgmlType.Q2_K: BlockQ2_K(x, y, levels, auxLevels); break;
                case GgmlType.Q3_K: BlockQ3_K(x, y, MemoryMarshal.Cast<byte, sbyte>(levels)); break;
                case GgmlType.Q4_K: BlockQ4_K(x, y, levels, auxLevels); break;
                case GgmlType.Q5_K: BlockQ5_K(x, y, levels, auxLevels); break;
                case GgmlType.Q6_K: BlockQ6_K(x, y, levels); break;
                case GgmlType.Q8_K: BlockQ8_K(x, y); break;
            }
        }
    }

    /// <summary>
    /// Quantizes a matrix of rows of <paramref name="rowLength"/> values each; returns the rows back to back
    /// (row stride RowBytes(type, rowLength)), i.e. the layout of a GGUF tensor with Shape[0] = rowLength.
    /// </summary>
    public static byte[] Rows(GgmlType type, ReadOnlySpan<float> src, int rowLength)
    {
        long bytes = ValidateRows(type, src.Length, rowLength);
        if (bytes > Array.MaxLength)
            throw new ArgumentException($"{type}: {src.Length} values need {bytes} bytes, more than one array can hold", nameof(src));
        var result = new byte[bytes];
        Rows(type, src, rowLength, result);
        return result;
    }

    /// <summary>Span form of <see cref="Rows(GgmlType, ReadOnlySpan{float}, int)"/>: writes into <paramref name="dst"/>.</summary>
    public static void Rows(GgmlType type, ReadOnlySpan<float> src, int rowLength, Span<byte> dst)
    {
        long bytes = ValidateRows(type, src.Length, rowLength);
        if (dst.Length < bytes)
            throw new ArgumentException($"{type}: destination has {dst.Length} bytes, {bytes} needed", nameof(dst));
        int rowBytes = checked((int)GgmlTypeInfo.RowBytes(type, rowLength));
        int rows = src.Length / rowLength;
        for (int r = 0; r < rows; r++)
            Row(type, src.Slice(r * rowLength, rowLength), dst.Slice(r * rowBytes, rowBytes));
    }

    private static long ValidateRows(GgmlType type, int valueCount, int rowLength)
    {
        if (!IsSupported(type)) throw new NotSupportedException($"quantization to {type} is not supported");
        int blockSize = GgmlTypeInfo.BlockSize(type);
        if (rowLength <= 0 || rowLength % blockSize != 0)
            throw new ArgumentException($"{type}: row length {rowLength} is not a positive multiple of the block size {blockSize}", nameof(rowLength));
        if (valueCount % rowLength != 0)
            throw new ArgumentException($"{type}: {valueCount} values is not a whole number of rows of {rowLength}", nameof(rowLength));
        return (long)(valueCount / rowLength) * GgmlTypeInfo.RowBytes(type, rowLength);
    }

    private static void WriteF16(Span<byte> y, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(y[offset..], HalfPrecision.ToF16(value));

    private static float RoundTripF16(float value) => HalfPrecision.FromF16(HalfPrecision.ToF16(value));

    // quantize_row_q4_0_ref: d = signed value of largest magnitude / -8, so that value maps to level 0.
    private static void BlockQ4_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
        {
            float v = x[j];
            if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
        }
        float d = max / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteF16(y, 0, d);
        for (int j = 0; j < 16; ++j)
        {
            // C truncates x + 8.5 toward zero (an int8_t cast), i.e. rounds half up for the shifted value.
            int q0 = Math.Min(15, (int)(x[j] * id + 8.5f));
            int q1 = Math.Min(15, (int)(x[j + 16] * id + 8.5f));
            y[2 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    // quantize_row_q4_1_ref: d = (max - min) / 15, m = min.
    private static void BlockQ4_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        for (int j = 0; j < 32; j++)
        {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        float d = (max - min) / 15;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteF16(y, 0, d);
        WriteF16(y, 2, min);
        for (int j = 0; j < 16; ++j)
        {
            int q0 = Math.Min(15, (int)((x[j] - min) * id + 0.5f));
            int q1 = Math.Min(15, (int)((x[j + 16] - min) * id + 0.5f));
            y[4 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    // quantize_row_q5_0_ref: d = signed max / -16; the fifth bits go to qh (bit j for element j).
    private static void BlockQ5_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
        {
            float v = x[j];
            if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
        }
        float d = max / -16;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteF16(y, 0, d);
        uint qh = 0;
        for (int j = 0; j < 16; ++j)
        {
            int q0 = Math.Min(31, (int)(x[j] * id + 16.5f));
            int q1 = Math.Min(31, (int)(x[j + 16] * id + 16.5f));
            y[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)((q0 & 0x10) >> 4) << j;
            qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(y[2..], qh);
    }

    // quantize_row_q5_1_ref: d = (max - min) / 31, m = min.
    private static void BlockQ5_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        for (int j = 0; j < 32; j++)
        {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        float d = (max - min) / 31;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteF16(y, 0, d);
        WriteF16(y, 2, min);
        uint qh = 0;
        for (int j = 0; j < 16; ++j)
        {
            // The C stores into uint8_t without clamping; the largest value is (max - min) * id + 0.5 ~ 31.5.
            int q0 = (byte)(int)((x[j] - min) * id + 0.5f);
            int q1 = (byte)(int)((x[j + 16] - min) * id + 0.5f);
            y[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)((q0 & 0x10) >> 4) << j;
            qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(y[4..], qh);
    }

    // quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d) (C roundf: half away from zero).
    private static void BlockQ8_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = Math.Max(amax, MathF.Abs(x[j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteF16(y, 0, d);
        for (int j = 0; j < 32; ++j) y[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
    }

    // quantize_row_q8_1_ref: as Q8_0, plus s = d * sum(q) for the dot products with Q4_1/Q5_1.
    private static void BlockQ8_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = Math.Max(amax, MathF.Abs(x[j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteF16(y, 0, d);
        int sum = 0;
        for (int j = 0; j < 32; ++j)
        {
            sbyte q = (sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
            y[4 + j] = (byte)q;
            sum += q;
        }
        WriteF16(y, 2, sum * d);
    }
}
