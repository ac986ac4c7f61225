using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace EdgeLM.Tensors.Quantization;

/// <summary>
/// Converts rows of any supported tensor type to float32 (the reference path; fast kernels live in Kernels/).
/// Each block decoder follows ggml's dequantize_row_* (ggml-quants.c) including the order of float operations,
/// so results are bit-identical to ggml's scalar code.
/// </summary>
public static class Dequantize
{
    /// <summary>Types <see cref="Row"/> can decode.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K;

    /// <summary>Dequantizes <paramref name="dst"/>.Length elements from the blocks in <paramref name="src"/>.</summary>
    public static void Row(GgmlType type, ReadOnlySpan<byte> src, Span<float> dst)
    {
        if (!IsSupported(type)) throw new NotSupportedException($"dequantization of {type} is not supported");
        int blockSize = GgmlTypeInfo.BlockSize(type);
        if (dst.Length % blockSize != 0)
            throw new ArgumentException($"{type}: row length {dst.Length} is not a multiple of the block size {blockSize}", nameof(dst));
        long need = GgmlTypeInfo.RowBytes(type, dst.Length);
        if (src.Length < need) throw new ArgumentException($"{type}: {src.Length} bytes given, {need} needed for {dst.Length} values", nameof(src));

        int blockBytes = GgmlTypeInfo.BlockBytes(type);
        int blocks = dst.Length / blockSize;
        switch (type)
        {
            case GgmlType.F32:
                MemoryMarshal.Cast<byte, float>(src[..(4 * dst.Length)]).CopyTo(dst);
                return;
            case GgmlType.F16:
                for (int i = 0; i < dst.Length; i++) dst[i] = HalfPrecision.FromF16(ReadU16(src, 2 * i));
                return;
            case GgmlType.BF16:
                for (int i = 0; i < dst.Length; i++) dst[i] = HalfPrecision.FromBf16(ReadU16(src, 2 * i));
                return;
        }

        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * blockBytes, blockBytes);
            Span<float> y = dst.Slice(b * blockSize, blockSize);
            switch (type)
            {
                case GgmlType.Q4_0: BlockQ4_0(block, y); break;
                case GgmlType.Q4_1: BlockQ4_1(block, y); break;
                case GgmlType.Q5_0: BlockQ5_0(block, y); break;
                case GgmlType.Q5_1: BlockQ5_1(block, y); break;
                case GgmlType.Q8_0: BlockQ8_0(block, y); break;
                case GgmlType.Q8_1: BlockQ8_1(block, y); break;
                case GgmlType.Q2_K: BlockQ2_K(block, y); break;
                case GgmlType.Q3_K: BlockQ3_K(block, y); break;
                case GgmlType.Q4_K: BlockQ4_K(block, y); break;
                case GgmlType.Q5_K: BlockQ5_K(block, y); break;
                case GgmlType.Q6_K: BlockQ6_K(block, y); break;
                case GgmlType.Q8_K: BlockQ8_K(block, y); break;
            }
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

    private static ushort ReadU16(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt16LittleEndian(s[offset..]);

    private static float ReadF16(ReadOnlySpan<byte> s, int offset) => HalfPrecision.FromF16(ReadU16(s, offset));

    // block_q4_0 { half d; u8 qs[16] }: low nibbles are elements 0..15, high nibbles 16..31, value = d * (q - 8).
    private static void BlockQ4_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        ReadOnlySpan<byte> qs = x.Slice(2, 16);
        for (int j = 0; j < 16; ++j)
        {
            y[j] = ((qs[j] & 0x0F) - 8) * d;
            y[j + 16] = ((qs[j] >> 4) - 8) * d;
        }
    }

    // block_q4_1 { half d; half m; u8 qs[16] }: value = d * q + m.
    private static void BlockQ4_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        float m = ReadF16(x, 2);
        ReadOnlySpan<byte> qs = x.Slice(4, 16);
        for (int j = 0; j < 16; ++j)
        {
            y[j] = (qs[j] & 0x0F) * d + m;
            y[j + 16] = (qs[j] >> 4) * d + m;
        }
    }

    // block_q5_0 { half d; u8 qh[4]; u8 qs[16] }: bit j of qh is the fifth bit of element j; value = d * (q - 16).
    private static void BlockQ5_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(x[2..]);
        ReadOnlySpan<byte> qs = x.Slice(6, 16);
        for (int j = 0; j < 16; ++j)
        {
            int high0 = (int)((qh >> j) << 4) & 0x10;
            int high1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (((qs[j] & 0x0F) | high0) - 16) * d;
            y[j + 16] = (((qs[j] >> 4) | high1) - 16) * d;
        }
    }

    // block_q5_1 { half d; half m; u8 qh[4]; u8 qs[16] }: value = d * q + m.
    private static void BlockQ5_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        float m = ReadF16(x, 2);
        uint qh = BinaryPrimitives.ReadUInt32LittleEndian(x[4..]);
        ReadOnlySpan<byte> qs = x.Slice(8, 16);
        for (int j = 0; j < 16; ++j)
        {
            int high0 = (int)((qh >> j) << 4) & 0x10;
            int high1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = ((qs[j] & 0x0F) | high0) * d + m;
            y[j + 16] = ((qs[j] >> 4) | high1) * d + m;
        }
    }

    // block_q8_0 { half d; i8 qs[32] }.
    private static void BlockQ8_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        for (int j = 0; j < 32; ++j) y[j] = (sbyte)x[2 + j] * d;
    }

    // block_q8_1 { half d; half s (= d * sum(qs), unused here); i8 qs[32] }.
    private static void BlockQ8_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        for (int j = 0; j < 32; ++j) y[j] = (sbyte)x[4 + j] * d;
    }

    // block_q2_K { u8 scales[16]; u8 qs[64]; half d; half dmin }: 16 groups of 16; scales byte = scale | min << 4.
    // Each 128-element half uses 32 bytes of qs; bit pair 2k of byte l holds element 32k + l.
    private static void BlockQ2_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        ReadOnlySpan<byte> scales = x[..16];
        float d = ReadF16(x, 80);
        float min = ReadF16(x, 82);
        int outIndex = 0;
        int group = 0;
        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> q = x.Slice(16 + 32 * half, 32);
            for (int shift = 0; shift < 8; shift += 2)
            {
                for (int part = 0; part < 2; part++)
                {
                    byte sc = scales[group++];
                    float dl = d * (sc & 0xF);
                    float ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l) y[outIndex++] = dl * ((q[16 * part + l] >> shift) & 3) - ml;
                }
            }
        }
    }

    // block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d }: 2-bit lows laid out like Q2_K, the third bit
    // in hmask (bit k of byte l for element 32k + l, a set bit meaning "no -4"), 6-bit signed scales packed 4+2.
    private static void BlockQ3_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        ReadOnlySpan<byte> hmask = x[..32];
        float dAll = ReadF16(x, 108);
        Span<sbyte> scales = stackalloc sbyte[16];
        UnpackQ3KScales(x.Slice(96, 12), scales);

        int outIndex = 0;
        int group = 0;
        int maskBit = 1;
        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> q = x.Slice(32 + 32 * half, 32);
            for (int shift = 0; shift < 8; shift += 2)
            {
                for (int part = 0; part < 2; part++)
                {
                    float dl = dAll * (scales[group++] - 32);
                    for (int l = 0; l < 16; ++l)
                    {
                        int k = 16 * part + l;
                        int level = ((q[k] >> shift) & 3) - ((hmask[k] & maskBit) != 0 ? 0 : 4);
                        y[outIndex++] = dl * level;
                    }
                }
                maskBit <<= 1;
            }
        }
    }

    /// <summary>
    /// Q3_K's 16 six-bit scales (stored +32): bytes 0..7 hold the low nibbles of scales 0..7 (low) and 8..15 (high),
    /// bytes 8..11 hold the top two bits, scale j at bits 2*(j/4) of byte 8 + j%4. Same result as ggml's kmask trick.
    /// </summary>
    internal static void UnpackQ3KScales(ReadOnlySpan<byte> packed, Span<sbyte> scales)
    {
        for (int j = 0; j < 16; j++)
        {
            int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
            int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
            scales[j] = (sbyte)(low | (high << 4));
        }
    }

    /// <summary>get_scale_min_k4: the 8 six-bit (scale, min) pairs of Q4_K/Q5_K packed into 12 bytes.</summary>
    internal static void GetScaleMinK4(int j, ReadOnlySpan<byte> q, out byte scale, out byte min)
    {
        if (j < 4)
        {
            scale = (byte)(q[j] & 63);
            min = (byte)(q[j + 4] & 63);
        }
        else
        {
            scale = (byte)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
            min = (byte)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
    }

    // block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128] }: 8 groups of 32; each 32 bytes of qs hold two
    // groups, low nibbles first. value = d * sc * q - dmin * m.
    private static void BlockQ4_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        float min = ReadF16(x, 2);
        ReadOnlySpan<byte> scales = x.Slice(4, 12);
        int outIndex = 0;
        for (int chunk = 0; chunk < 4; chunk++)
        {
            ReadOnlySpan<byte> q = x.Slice(16 + 32 * chunk, 32);
            GetScaleMinK4(2 * chunk, scales, out byte sc, out byte m);
            float d1 = d * sc, m1 = min * m;
            GetScaleMinK4(2 * chunk + 1, scales, out sc, out m);
            float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) y[outIndex++] = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) y[outIndex++] = d2 * (q[l] >> 4) - m2;
        }
    }

    // block_q5_K { half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: Q4_K plus a fifth bit per element,
    // bit 2*chunk (low nibbles) and 2*chunk+1 (high nibbles) of qh[l].
    private static void BlockQ5_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 0);
        float min = ReadF16(x, 2);
        ReadOnlySpan<byte> scales = x.Slice(4, 12);
        ReadOnlySpan<byte> qh = x.Slice(16, 32);
        int outIndex = 0;
        int u1 = 1, u2 = 2;
        for (int chunk = 0; chunk < 4; chunk++)
        {
            ReadOnlySpan<byte> ql = x.Slice(48 + 32 * chunk, 32);
            GetScaleMinK4(2 * chunk, scales, out byte sc, out byte m);
            float d1 = d * sc, m1 = min * m;
            GetScaleMinK4(2 * chunk + 1, scales, out sc, out m);
            float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) y[outIndex++] = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) y[outIndex++] = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }

    // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d }: per 128 elements 64 bytes of ql (low nibbles
    // of elements l and l+32, high nibbles of l+64 and l+96) and 32 bytes of qh (2 bits each). value = d*sc*(q-32).
    private static void BlockQ6_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = ReadF16(x, 208);
        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> ql = x.Slice(64 * half, 64);
            ReadOnlySpan<byte> qh = x.Slice(128 + 32 * half, 32);
            ReadOnlySpan<byte> sc = x.Slice(192 + 8 * half, 8);
            Span<float> yh = y.Slice(128 * half, 128);
            for (int l = 0; l < 32; ++l)
            {
                int group = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                yh[l] = d * (sbyte)sc[group] * q1;
                yh[l + 32] = d * (sbyte)sc[group + 2] * q2;
                yh[l + 64] = d * (sbyte)sc[group + 4] * q3;
                yh[l + 96] = d * (sbyte)sc[group + 6] * q4;
            }
        }
    }

    // block_q8_K { float d; i8 qs[256]; i16 bsums[16] }.
    private static void BlockQ8_K(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = BinaryPrimitives.ReadSingleLittleEndian(x);
        for (int j = 0; j < 256; ++j) y[j] = d * (sbyte)x[4 + j];
    }
}
