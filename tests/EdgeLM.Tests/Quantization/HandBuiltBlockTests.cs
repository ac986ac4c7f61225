using System.Buffers.Binary;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Quantization;

/// <summary>
/// Blocks assembled byte by byte from ggml's documented struct layouts (ggml-common.h), decoded, and compared with
/// values computed here from the layout definition. Scales are powers of two and levels small integers, so every
/// expected value is exact and the comparison is exact equality.
/// </summary>
public class HandBuiltBlockTests
{
    private const int QK = 256;

    private static ushort F16(float v) => BitConverter.HalfToUInt16Bits((Half)v);

    private static float[] Decode(GgmlType type, byte[] block, int blocks = 1)
    {
        Assert.Equal(GgmlTypeInfo.BlockBytes(type) * blocks, block.Length);
        var result = new float[GgmlTypeInfo.BlockSize(type) * blocks];
        Dequantize.Row(type, block, result);
        return result;
    }

    // Deterministic level pattern that visits every value in [0, count) and is not monotonic.
    private static int Level(int i, int count, int salt = 0) => (i * 7 + 3 + salt * 5) % count;

    [Fact]
    public void Q4_0_LowNibblesAreFirstHalf()
    {
        const float d = 0.25f;
        var block = new byte[18];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        var q = new int[32];
        for (int i = 0; i < 32; i++) q[i] = Level(i, 16);
        for (int j = 0; j < 16; j++) block[2 + j] = (byte)(q[j] | (q[j + 16] << 4));

        float[] y = Decode(GgmlType.Q4_0, block);
        for (int i = 0; i < 32; i++) Assert.Equal(d * (q[i] - 8), y[i]);
    }

    [Fact]
    public void Q4_1_AddsMinimum()
    {
        const float d = 0.5f, m = -3f;
        var block = new byte[20];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), F16(m));
        var q = new int[32];
        for (int i = 0; i < 32; i++) q[i] = Level(i, 16, 1);
        for (int j = 0; j < 16; j++) block[4 + j] = (byte)(q[j] | (q[j + 16] << 4));

        float[] y = Decode(GgmlType.Q4_1, block);
        for (int i = 0; i < 32; i++) Assert.Equal(d * q[i] + m, y[i]);
    }

    [Fact]
    public void Q5_0_FifthBitFromQh()
    {
        const float d = 0.125f;
        var block = new byte[22];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        var q = new int[32];
        for (int i = 0; i < 32; i++) q[i] = Level(i, 32);
        uint qh = 0;
        for (int i = 0; i < 32; i++) if ((q[i] & 16) != 0) qh |= 1u << i;
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(2), qh);
        for (int j = 0; j < 16; j++) block[6 + j] = (byte)((q[j] & 15) | ((q[j + 16] & 15) << 4));

        float[] y = Decode(GgmlType.Q5_0, block);
        for (int i = 0; i < 32; i++) Assert.Equal(d * (q[i] - 16), y[i]);
    }

    [Fact]
    public void Q5_1_FifthBitFromQhPlusMinimum()
    {
        const float d = 0.25f, m = 1.5f;
        var block = new byte[24];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), F16(m));
        var q = new int[32];
        for (int i = 0; i < 32; i++) q[i] = Level(i, 32, 2);
        uint qh = 0;
        for (int i = 0; i < 32; i++) if ((q[i] & 16) != 0) qh |= 1u << i;
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(4), qh);
        for (int j = 0; j < 16; j++) block[8 + j] = (byte)((q[j] & 15) | ((q[j + 16] & 15) << 4));

        float[] y = Decode(GgmlType.Q5_1, block);
        for (int i = 0; i < 32; i++) Assert.Equal(d * q[i] + m, y[i]);
    }

    [Fact]
    public void Q8_0_SignedBytes()
    {
        const float d = 0.0625f;
        var block = new byte[34];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        var q = new int[32];
        for (int i = 0; i < 32; i++) q[i] = (i * 37 % 255) - 127;
        for (int i = 0; i < 32; i++) block[2 + i] = (byte)(sbyte)q[i];

        float[] y = Decode(GgmlType.Q8_0, block);
        for (int i = 0; i < 32; i++) Assert.Equal(d * q[i], y[i]);
    }

    [Fact]
    public void Q8_1_SkipsSumField()
    {
        const float d = 2f;
        var block = new byte[36];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), F16(12345f));
        var q = new int[32];
        for (int i = 0; i < 32; i++) q[i] = 100 - 7 * i;
        for (int i = 0; i < 32; i++) block[4 + i] = (byte)(sbyte)q[i];

        float[] y = Decode(GgmlType.Q8_1, block);
        for (int i = 0; i < 32; i++) Assert.Equal(d * q[i], y[i]);
    }

    // Q2_K and Q3_K put 2-bit levels of a 128-element half in 32 bytes: element r of the half sits in byte r % 32,
    // bit pair r / 32.
    private static void Put2Bit(byte[] block, int qsOffset, int element, int value)
    {
        int half = element / 128, r = element % 128;
        block[qsOffset + 32 * half + r % 32] |= (byte)(value << (2 * (r / 32)));
    }

    [Fact]
    public void Q2_K_FourBitScaleAndMinPerSixteen()
    {
        const float d = 0.5f, dmin = 0.25f;
        var block = new byte[84];
        var sc = new int[16];
        var mn = new int[16];
        for (int g = 0; g < 16; g++) { sc[g] = Level(g, 16); mn[g] = Level(g, 16, 3); }
        for (int g = 0; g < 16; g++) block[g] = (byte)(sc[g] | (mn[g] << 4));
        var q = new int[QK];
        for (int i = 0; i < QK; i++) { q[i] = Level(i, 4, i / 64); Put2Bit(block, 16, i, q[i]); }
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(80), F16(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(82), F16(dmin));

        float[] y = Decode(GgmlType.Q2_K, block);
        for (int i = 0; i < QK; i++) Assert.Equal(d * sc[i / 16] * q[i] - dmin * mn[i / 16], y[i]);
    }

    [Fact]
    public void Q3_K_SignedSixBitScalesAndHighMask()
    {
        const float d = 0.125f;
        var block = new byte[110];
        // Signed group scales s in [-32, 31], stored as s + 32: low nibbles in bytes 0..7 (groups 0..7 low nibble,
        // groups 8..15 high nibble), top two bits in byte 8 + g % 4 at bit 2 * (g / 4).
        var s = new int[16];
        for (int g = 0; g < 16; g++) s[g] = g * 4 - 32 + (g % 3);
        s[15] = 31;
        for (int g = 0; g < 16; g++)
        {
            int stored = s[g] + 32;
            if (g < 8) block[96 + g] |= (byte)(stored & 15);
            else block[96 + g - 8] |= (byte)((stored & 15) << 4);
            block[96 + 8 + g % 4] |= (byte)((stored >> 4) << (2 * (g / 4)));
        }
        // 3-bit levels q in [0, 8), value q - 4: low two bits in qs, third bit in hmask[i % 32] bit i / 32.
        var q = new int[QK];
        for (int i = 0; i < QK; i++)
        {
            q[i] = Level(i, 8, i / 32);
            Put2Bit(block, 32, i, q[i] & 3);
            if ((q[i] & 4) != 0) block[i % 32] |= (byte)(1 << (i / 32));
        }
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(108), F16(d));

        float[] y = Decode(GgmlType.Q3_K, block);
        for (int i = 0; i < QK; i++) Assert.Equal(d * s[i / 16] * (q[i] - 4), y[i]);
    }

    // Q4_K/Q5_K: eight 6-bit (scale, min) pairs in 12 bytes. Groups 0..3 use the low 6 bits of bytes 0..3 (scale)
    // and 4..7 (min); groups 4..7 keep their low nibbles in bytes 8..11 (scale low, min high) and their top two bits
    // in the top two bits of bytes 0..3 (scale) and 4..7 (min).
    private static void PutScaleMinK4(byte[] block, int offset, int[] sc, int[] mn)
    {
        for (int g = 0; g < 4; g++)
        {
            block[offset + g] = (byte)(sc[g] | ((sc[g + 4] >> 4) << 6));
            block[offset + g + 4] = (byte)(mn[g] | ((mn[g + 4] >> 4) << 6));
            block[offset + g + 8] = (byte)((sc[g + 4] & 15) | ((mn[g + 4] & 15) << 4));
        }
    }

    [Fact]
    public void Q4_K_PackedSixBitScalesAndMins()
    {
        const float d = 0.0625f, dmin = 0.125f;
        var block = new byte[144];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), F16(dmin));
        int[] sc = [1, 63, 17, 32, 48, 5, 62, 33];
        int[] mn = [0, 7, 63, 16, 31, 60, 47, 1];
        PutScaleMinK4(block, 4, sc, mn);
        // Group g (32 elements) lives in qs bytes 32 * (g / 2) .. +31: low nibble for even g, high for odd g.
        var q = new int[QK];
        for (int i = 0; i < QK; i++)
        {
            q[i] = Level(i, 16, i / 32);
            int g = i / 32;
            block[16 + 32 * (g / 2) + i % 32] |= (byte)(q[i] << (g % 2 == 0 ? 0 : 4));
        }

        float[] y = Decode(GgmlType.Q4_K, block);
        for (int i = 0; i < QK; i++) Assert.Equal(d * sc[i / 32] * q[i] - dmin * mn[i / 32], y[i]);
    }

    [Fact]
    public void Q5_K_FifthBitPerGroupInQh()
    {
        const float d = 0.03125f, dmin = 0.5f;
        var block = new byte[176];
        BinaryPrimitives.WriteUInt16LittleEndian(block, F16(d));
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), F16(dmin));
        int[] sc = [63, 1, 40, 23, 16, 57, 2, 31];
        int[] mn = [12, 63, 0, 33, 48, 5, 19, 62];
        PutScaleMinK4(block, 4, sc, mn);
        // Low 4 bits as in Q4_K (qs at offset 48); the fifth bit of group g's element at position l is bit g of qh[l].
        var q = new int[QK];
        for (int i = 0; i < QK; i++)
        {
            q[i] = Level(i, 32, i / 32);
            int g = i / 32, l = i % 32;
            block[48 + 32 * (g / 2) + l] |= (byte)((q[i] & 15) << (g % 2 == 0 ? 0 : 4));
            if ((q[i] & 16) != 0) block[16 + l] |= (byte)(1 << g);
        }

        float[] y = Decode(GgmlType.Q5_K, block);
        for (int i = 0; i < QK; i++) Assert.Equal(d * sc[i / 32] * q[i] - dmin * mn[i / 32], y[i]);
    }

    [Fact]
    public void Q6_K_LowNibblesAndHighPairs()
    {
        const float d = 0.0078125f;
        var block = new byte[210];
        var s = new int[16];
        for (int g = 0; g < 16; g++) s[g] = (g * 29 % 255) - 127;
        s[3] = -128;
        for (int g = 0; g < 16; g++) block[192 + g] = (byte)(sbyte)s[g];
        // Element r of a 128-element half h, quarter k = r / 32, l = r % 32: low nibble in ql[64h + l + 32*(k%2)]
        // (low half of the byte for k < 2, high half otherwise), high two bits in qh[32h + l] at bit 2k.
        var q = new int[QK];
        for (int i = 0; i < QK; i++)
        {
            q[i] = Level(i, 64, i / 16);
            int h = i / 128, r = i % 128, k = r / 32, l = r % 32;
            block[64 * h + l + 32 * (k % 2)] |= (byte)((q[i] & 15) << (k < 2 ? 0 : 4));
            block[128 + 32 * h + l] |= (byte)((q[i] >> 4) << (2 * k));
        }
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(208), F16(d));

        float[] y = Decode(GgmlType.Q6_K, block);
        for (int i = 0; i < QK; i++) Assert.Equal(d * s[i / 16] * (q[i] - 32), y[i]);
    }

    [Fact]
    public void Q8_K_Float32ScaleAndSignedBytes()
    {
        const float d = 0.001f; // float32 scale, need not be representable in fp16
        var block = new byte[292];
        BinaryPrimitives.WriteSingleLittleEndian(block, d);
        var q = new int[QK];
        for (int i = 0; i < QK; i++) { q[i] = (i * 101 % 255) - 127; block[4 + i] = (byte)(sbyte)q[i]; }

        float[] y = Decode(GgmlType.Q8_K, block);
        for (int i = 0; i < QK; i++) Assert.Equal(d * q[i], y[i]);
    }

    [Fact]
    public void MultiBlockRowsDecodeEachBlockWithItsOwnScale()
    {
        var row = new byte[36];
        BinaryPrimitives.WriteUInt16LittleEndian(row, F16(1f));
        BinaryPrimitives.WriteUInt16LittleEndian(row.AsSpan(18), F16(-4f));
        for (int j = 0; j < 16; j++) { row[2 + j] = 0x9A; row[20 + j] = 0x07; } // levels 10/9 and 7/0

        float[] y = Decode(GgmlType.Q4_0, row, blocks: 2);
        for (int j = 0; j < 16; j++)
        {
            Assert.Equal(2f, y[j]);
            Assert.Equal(1f, y[j + 16]);
            Assert.Equal(4f, y[32 + j]);
            Assert.Equal(32f, y[48 + j]);
        }
    }

    [Fact]
    public void PlainFloatFormats()
    {
        float[] values = [0f, -0f, 1f, -2.5f, 65504f, 6.1035156e-05f, 5.9604645e-08f, float.PositiveInfinity];
        var f16 = new byte[2 * values.Length];
        var bf16 = new byte[2 * values.Length];
        var f32 = new byte[4 * values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(f16.AsSpan(2 * i), F16(values[i]));
            BinaryPrimitives.WriteUInt16LittleEndian(bf16.AsSpan(2 * i), (ushort)(BitConverter.SingleToUInt32Bits(values[i]) >> 16));
            BinaryPrimitives.WriteSingleLittleEndian(f32.AsSpan(4 * i), values[i]);
        }
        var y = new float[values.Length];
        Dequantize.Row(GgmlType.F16, f16, y);
        Assert.Equal(values, y);
        Dequantize.Row(GgmlType.F32, f32, y);
        Assert.Equal(values, y);
        Dequantize.Row(GgmlType.BF16, bf16, y);
        for (int i = 0; i < values.Length; i++)
            Assert.Equal(BitConverter.SingleToUInt32Bits(values[i]) & 0xFFFF0000u, BitConverter.SingleToUInt32Bits(y[i]));
    }
}
