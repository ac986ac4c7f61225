using System.Buffers.Binary;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression.Methods;

/// <summary>
/// The value grid of a quantized block: once a format's quantizer has chosen a block's scales, every element i can
/// only take the values Scale[i] * L + Offset[i] for stored levels L in [MinLevel, MaxLevel]. GPTQ, AutoRound and the
/// MSE search keep the scales the format chooses and only change which level each element takes, so this is all
/// they need to know about a format: how to rewrite the levels of a block whose scale bytes stay as they are.
/// </summary>
public static class BlockGrid
{
    /// <summary>Types whose levels can be rewritten (the legacy 32-blocks and Q4_K/Q5_K/Q6_K).</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0
        or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>Stored level range. Q8_0 stops at -127 like the reference quantizer (SIMD dot products negate levels).</summary>
    public static (int Min, int Max) LevelRange(GgmlType type) => type switch
    {
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q4_K => (0, 15),
        GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q5_K => (0, 31),
        GgmlType.Q6_K => (0, 63),
        GgmlType.Q8_0 => (-127, 127),
        _ => throw new NotSupportedException($"levels of {type} blocks cannot be rewritten"),
    };

    /// <summary>Elements that share one scale inside a block (the unit a clipping ratio applies to).</summary>
    public static int SubBlockSize(GgmlType type) => type switch
    {
        GgmlType.Q4_K or GgmlType.Q5_K => 32,
        GgmlType.Q6_K or GgmlType.Q3_K or GgmlType.Q2_K => 16,
        _ => GgmlTypeInfo.BlockSize(type),
    };

    /// <summary>Overwrites the levels of one block, leaving its scale bytes untouched.</summary>
    public static void WriteLevels(GgmlType type, Span<byte> block, ReadOnlySpan<int> levels)
    {
        switch (type)
        {
            case GgmlType.Q4_0: Pack4(block.Slice(2, 16), levels); break;
            case GgmlType.Q4_1: Pack4(block.Slice(4, 16), levels); break;
            case GgmlType.Q5_0: Pack5(block.Slice(2, 4), block.Slice(6, 16), levels); break;
            case GgmlType.Q5_1: Pack5(block.Slice(4, 4), block.Slice(8, 16), levels); break;
            case GgmlType.Q8_0:
                for (int j = 0; j < 32; j++) block[2 + j] = (byte)(sbyte)levels[j];
                break;
            case GgmlType.Q4_K:
            {
                var qs = block.Slice(16, 128);
                for (int j = 0; j < 256; j += 64)
                    for (int l = 0; l < 32; ++l) qs[j / 2 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
                break;
            }
            case GgmlType.Q5_K:
            {
                var qh = block.Slice(16, 32);
                var ql = block.Slice(48, 128);
                qh.Clear();
                int m1 = 1, m2 = 2;
                for (int n = 0; n < 256; n += 64)
                {
                    for (int j = 0; j < 32; ++j)
                    {
                        int l1 = levels[n + j], l2 = levels[n + j + 32];
                        if (l1 > 15) { l1 -= 16; qh[j] |= (byte)m1; }
                        if (l2 > 15) { l2 -= 16; qh[j] |= (byte)m2; }
                        ql[n / 2 + j] = (byte)(l1 | (l2 << 4));
                    }
                    m1 <<= 2;
                    m2 <<= 2;
                }
                break;
            }
            case GgmlType.Q6_K:
            {
                var ql = block[..128];
                var qh = block.Slice(128, 64);
                for (int j = 0; j < 256; j += 128)
                {
                    var qlHalf = ql.Slice(j / 2, 64);
                    var qhHalf = qh.Slice(j / 4, 32);
                    for (int l = 0; l < 32; ++l)
                    {
                        int a = levels[j + l], b = levels[j + l + 32], c = levels[j + l + 64], d = levels[j + l + 96];
                        qlHalf[l] = (byte)((a & 0xF) | ((c & 0xF) << 4));
                        qlHalf[l + 32] = (byte)((b & 0xF) | ((d & 0xF) << 4));
                        qhHalf[l] = (byte)((a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((d >> 4) << 6));
                    }
                }
                break;
            }
            default: throw new NotSupportedException($"levels of {type} blocks cannot be rewritten");
        }
    }

    private static void Pack4(Span<byte> qs, ReadOnlySpan<int> levels)
    {
        for (int j = 0; j < 16; j++) qs[j] = (byte)(levels[j] | (levels[j + 16] << 4));
    }

    private static void Pack5(Span<byte> qhBytes, Span<byte> qs, ReadOnlySpan<int> levels)
    {
        uint qh = 0;
        for (int j = 0; j < 32; j++) qh |= (uint)((levels[j] >> 4) & 1) << j;
        for (int j = 0; j < 16; j++) qs[j] = (byte)((levels[j] & 0xF) | ((levels[j + 16] & 0xF) << 4));
        BinaryPrimitives.WriteUInt32LittleEndian(qhBytes, qh);
    }

    /// <summary>
    /// Reads the grid of one block: decodes it with every level 0 (the offsets) and every level 1 (offset + scale),
    /// through the same decoder readers use, so fp16 scale rounding is accounted for.
    /// </summary>
    public static void Read(GgmlType type, ReadOnlySpan<byte> block, Span<float> scale, Span<float> offset)
    {
        int n = GgmlTypeInfo.BlockSize(type);
        Span<byte> probe = stackalloc byte[block.Length];
        Span<int> levels = stackalloc int[n];
        block.CopyTo(probe);
        levels.Clear();
        WriteLevels(type, probe, levels);
        Dequantize.Row(type, probe, offset[..n]);
        levels.Fill(1);
        WriteLevels(type, probe, levels);
        Dequantize.Row(type, probe, scale[..n]);
        for (int i = 0; i < n; i++) scale[i] -= offset[i];
    }

    /// <summary>The nearest level of <paramref name="value"/> on one element's grid.</summary>
    public static int NearestLevel(float value, float scale, float offset, int minLevel, int maxLevel)
    {
        if (scale == 0 || !float.IsFinite(scale)) return Math.Clamp(0, minLevel, maxLevel);
        float l = MathF.Round((value - offset) / scale);
        return l <= minLevel ? minLevel : l >= maxLevel ? maxLevel : (int)l;
    }

    /// <summary>
    /// Quantizes one row with the format's reference quantizer and returns its grid (scale and offset per element):
    /// the scales the format itself chooses for these values.
    /// </summary>
    public static void ReferenceGrid(GgmlType type, ReadOnlySpan<float> row, Span<byte> rowBytes, Span<float> scale, Span<float> offset)
    {
        Quantize.Row(type, row, rowBytes);
        ReadRow(type, rowBytes, row.Length, scale, offset);
    }

    /// <summary><see cref="Read"/> for every block of a row of <paramref name="n"/> values.</summary>
    public static void ReadRow(GgmlType type, ReadOnlySpan<byte> rowBytes, int n, Span<float> scale, Span<float> offset)
    {
        int bs = GgmlTypeInfo.BlockSize(type), bb = GgmlTypeInfo.BlockBytes(type);
        for (int b = 0; b < n / bs; b++)
            Read(type, rowBytes.Slice(b * bb, bb), scale.Slice(b * bs, bs), offset.Slice(b * bs, bs));
    }

    /// <summary>Writes levels for a whole row of blocks.</summary>
    public static void WriteRowLevels(GgmlType type, Span<byte> rowBytes, ReadOnlySpan<int> levels)
    {
        int bs = GgmlTypeInfo.BlockSize(type), bb = GgmlTypeInfo.BlockBytes(type);
        for (int b = 0; b < levels.Length / bs; b++)
            WriteLevels(type, rowBytes.Slice(b * bb, bb), levels.Slice(b * bs, bs));
    }
}
