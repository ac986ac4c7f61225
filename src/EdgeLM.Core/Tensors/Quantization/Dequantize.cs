using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace EdgeLM.Tensors.Quantization;

/// <summary>Converts rows of any supported tensor type to float32 (the reference path; fast kernels live in Kernels/).</summary>
public static class Dequantize
{
    /// <summary>Dequantizes <paramref name="dst"/>.Length elements from the blocks in <paramref name="src"/>.</summary>
    public static void Row(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        long need = GgmlTypeInfo.RowBytes(type, dst.Length);
        if (src.Length < need) throw new ArgumentException($"{type}: {src.Length} bytes given, {need} needed for {dst.Length} values");
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.Cast<byte, float>(src)[..dst.Length].CopyTo(dst);
                break;
            case GgmlType.F16:
                for (int i = 0; i < dst.Length; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]));
                break;
            case GgmlType.BF16:
                for (int i = 0; i < dst.Length; i++) dst[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]) << 16);
                break;
            default:
                throw new NotSupportedException($"dequantization of {type} is not supported");
        }
    }

    /// <summary>A whole tensor as float32 (for small tensors such as norms and biases, and for tests).</summary>
    public static float[] ToFloat(Tensor t)
    {
        var result = new float[checked((int)t.ElementCount)];
        long rows = t.RowCount;
        int n = t.RowLength;
        for (long r = 0; r < rows; r++) Row(t.Type, t.Row(r), result.AsSpan(checked((int)(r * n)), n));
        return result;
    }
}
