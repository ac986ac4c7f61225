using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static EdgeLM.Tensors.Quantization.ScaleSearch;

namespace EdgeLM.Tensors.Quantization;

// The k-quant reference quantizers (super-blocks of QK_K = 256). Block layouts are documented on the matching
// decoders in Dequantize.cs.
public static partial class Quantize
{
    private const int QK = GgmlTypeInfo.QK_K;

    // Packs four 2-bit levels per byte: byte l of each 128-element half holds elements l, l+32, l+64, l+96.
    private static void Pack2Bit(ReadOnlySpan<byte> levels, Span<byte> qs)
    {
        for (int j = 0; j < QK; j += 128)
            for (int l = 0; l < 32; ++l)
                qs[j / 4 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 2) | (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6));
    }

    // quantize_row_q2_K_ref: 16 groups of 16 with 4-bit scale and min, each relative to the block's d and dmin.
    private static void BlockQ2_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels, Span<byte> auxLevels)
    {
        Span<float> weights = stackalloc float[16];
        Span<float> mins = stackalloc float[QK / 16];
        Span<float> scales = stackalloc float[QK / 16];
        Span<byte> blockScales = y[..16];
        Span<byte> qs = y.Slice(16, 64);
        const float q4scale = 15f;

        float maxScale = 0;
        float maxMin = 0;
        for (int j = 0; j < QK / 16; ++j)
        {
            ReadOnlySpan<float> group = x.Slice(16 * j, 16);
            for (int l = 0; l < 16; ++l) weights[l] = MathF.Abs(group[l]);
            scales[j] = MakeQkx2Quants(3, group, weights, levels.Slice(16 * j, 16), out mins[j], auxLevels, -0.5f, 0.1f, 15, true);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        if (maxScale > 0)
        {
            float iscale = q4scale / maxScale;
            for (int j = 0; j < QK / 16; ++j) blockScales[j] = (byte)NearestInt(iscale * scales[j]);
            WriteF16(y, 80, maxScale / q4scale);
        }
        else
        {
            blockScales.Clear();
            WriteF16(y, 80, 0f);
        }
        if (maxMin > 0)
        {
            float iscale = q4scale / maxMin;
            for (int j = 0; j < QK / 16; ++j) blockScales[j] |= (byte)(NearestInt(iscale * mins[j]) << 4);
            WriteF16(y, 82, maxMin / q4scale);
        }
        else
        {
            WriteF16(y, 82, 0f);
        }

        // Re-derive the levels against the scales as stored (fp16 d/dmin times 4-bit multipliers).
        float dStored = HalfPrecision.FromF16(BinaryPrimitives.ReadUInt16LittleEndian(y[80..]));
        float dminStored = HalfPrecision.FromF16(BinaryPrimitives.ReadUInt16LittleEndian(y[82..]));
        for (int j = 0; j < QK / 16; ++j)
        {
            float d = dStored * (blockScales[j] & 0xF);
            if (d == 0) continue;
            float dm = dminStored * (blockScales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii)
                levels[16 * j + ii] = (byte)Math.Clamp(NearestInt((x[16 * j + ii] + dm) / d), 0, 3);
        }
        Pack2Bit(levels, qs);
    }

    // quantize_row_q3_K_ref: 16 groups of 16, symmetric 3-bit levels, 6-bit signed group scales.
    private static void BlockQ3_K(ReadOnlySpan<float> x, Span<byte> y, Span<sbyte> levels)
    {
        Span<float> scales = stackalloc float[QK / 16];
        Span<byte> hmask = y[..32];
        Span<byte> qs = y.Slice(32, 64);
        Span<byte> packedScales = y.Slice(96, 12);

        float maxScale = 0;
        float amax = 0;
        for (int j = 0; j < QK / 16; ++j)
        {
            scales[j] = MakeQ3Quants(4, x.Slice(16 * j, 16), levels.Slice(16 * j, 16));
            float scale = MathF.Abs(scales[j]);
            if (scale > amax) { amax = scale; maxScale = scales[j]; }
        }

        packedScales.Clear();
        if (maxScale != 0)
        {
            float iscale = -32f / maxScale;
            for (int j = 0; j < QK / 16; ++j)
            {
                // C stores nearest_int into an int8_t before clamping; the value is within [-32, 32] here.
                int l = Math.Clamp((int)(sbyte)NearestInt(iscale * scales[j]), -32, 31) + 32;
                if (j < 8) packedScales[j] = (byte)(l & 0xF);
                else packedScales[j - 8] |= (byte)((l & 0xF) << 4);
                l >>= 4;
                packedScales[j % 4 + 8] |= (byte)(l << (2 * (j / 4)));
            }
            WriteF16(y, 108, 1 / iscale);
        }
        else
        {
            WriteF16(y, 108, 0f);
        }

        float dStored = HalfPrecision.FromF16(BinaryPrimitives.ReadUInt16LittleEndian(y[108..]));
        Span<sbyte> groupScales = stackalloc sbyte[16];
        Dequantize.UnpackQ3KScales(packedScales, groupScales);
        for (int j = 0; j < QK / 16; ++j)
        {
            float d = dStored * (groupScales[j] - 32);
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii)
                levels[16 * j + ii] = (sbyte)(Math.Clamp(NearestInt(x[16 * j + ii] / d), -4, 3) + 4);
        }

        // The third bit of element j goes to bit j/32 of hmask[j%32]; what remains is the 2-bit low part.
        hmask.Clear();
        for (int j = 0; j < QK; ++j)
        {
            if (levels[j] > 3)
            {
                hmask[j % 32] |= (byte)(1 << (j / 32));
                levels[j] -= 4;
            }
        }
        // Every level is now in 0..3, so the bytes can be packed like Q2_K's.
        Pack2Bit(MemoryMarshal.Cast<sbyte, byte>(levels), qs);
    }

    // Shared by Q4_K and Q5_K: fits 8 groups of 32 with make_qkx2_quants, stores d, dmin and the 6-bit packed
    // (scale, min) pairs, then re-derives the levels (0..nmax) against the stored scales.
    private static void QuantizeScaleMinK(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels, Span<byte> auxLevels,
        int nmax, float rmin, float rdelta, int nstep)
    {
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[QK / 32];
        Span<float> scales = stackalloc float[QK / 32];
        Span<byte> packed = y.Slice(4, 12);

        float maxScale = 0;
        float maxMin = 0;
        for (int j = 0; j < QK / 32; ++j)
        {
            ReadOnlySpan<float> group = x.Slice(32 * j, 32);
            float sumX2 = 0;
            for (int l = 0; l < 32; ++l) sumX2 += group[l] * group[l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = avX + MathF.Abs(group[l]);
            scales[j] = MakeQkx2Quants(nmax, group, weights, levels.Slice(32 * j, 32), out mins[j], auxLevels, rmin, rdelta, nstep, false);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (int j = 0; j < QK / 32; ++j)
        {
            // C assigns nearest_int to uint8_t (wrapping) before MIN(63, .); kept for identical bytes.
            byte ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
            byte lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                packed[j] = ls;
                packed[j + 4] = lm;
            }
            else
            {
                packed[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                packed[j - 4] |= (byte)((ls >> 4) << 6);
                packed[j] |= (byte)((lm >> 4) << 6);
            }
        }
        WriteF16(y, 0, maxScale / 63f);
        WriteF16(y, 2, maxMin / 63f);

        float dStored = HalfPrecision.FromF16(BinaryPrimitives.ReadUInt16LittleEndian(y));
        float dminStored = HalfPrecision.FromF16(BinaryPrimitives.ReadUInt16LittleEndian(y[2..]));
        for (int j = 0; j < QK / 32; ++j)
        {
            Dequantize.GetScaleMinK4(j, packed, out byte sc, out byte m);
            float d = dStored * sc;
            if (d == 0) continue;
            float dm = dminStored * m;
            for (int ii = 0; ii < 32; ++ii)
                levels[32 * j + ii] = (byte)Math.Clamp(NearestInt((x[32 * j + ii] + dm) / d), 0, nmax);
        }
    }

    // quantize_row_q4_K_ref.
    private static void BlockQ4_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels, Span<byte> auxLevels)
    {
        QuantizeScaleMinK(x, y, levels, auxLevels, 15, -1f, 0.1f, 20);
        Span<byte> qs = y.Slice(16, 128);
        for (int j = 0; j < QK; j += 64)
            for (int l = 0; l < 32; ++l)
                qs[j / 2 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
    }

    // quantize_row_q5_K_ref.
    private static void BlockQ5_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels, Span<byte> auxLevels)
    {
        QuantizeScaleMinK(x, y, levels, auxLevels, 31, -0.5f, 0.1f, 15);
        Span<byte> qh = y.Slice(16, 32);
        Span<byte> ql = y.Slice(48, 128);
        qh.Clear();
        int m1 = 1, m2 = 2;
        for (int n = 0; n < QK; n += 64)
        {
            for (int j = 0; j < 32; ++j)
            {
                int l1 = levels[n + j];
                if (l1 > 15) { l1 -= 16; qh[j] |= (byte)m1; }
                int l2 = levels[n + j + 32];
                if (l2 > 15) { l2 -= 16; qh[j] |= (byte)m2; }
                ql[n / 2 + j] = (byte)(l1 | (l2 << 4));
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }

    // quantize_row_q6_K_ref: 16 groups of 16, 6-bit symmetric levels, int8 group scales relative to d.
    private static void BlockQ6_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels)
    {
        Span<float> scales = stackalloc float[QK / 16];
        float maxScale = 0;
        float maxAbsScale = 0;
        for (int ib = 0; ib < QK / 16; ++ib)
        {
            float scale = MakeQxQuants(32, x.Slice(16 * ib, 16), levels.Slice(16 * ib, 16));
            scales[ib] = scale;
            float absScale = MathF.Abs(scale);
            if (absScale > maxAbsScale) { maxAbsScale = absScale; maxScale = scale; }
        }

        if (maxAbsScale < GroupMaxEps)
        {
            y.Clear();
            return;
        }

        Span<byte> ql = y[..128];
        Span<byte> qh = y.Slice(128, 64);
        Span<byte> groupScales = y.Slice(192, 16);
        float iscale = -128f / maxScale;
        WriteF16(y, 208, 1 / iscale);
        for (int ib = 0; ib < QK / 16; ++ib) groupScales[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));

        float dStored = HalfPrecision.FromF16(BinaryPrimitives.ReadUInt16LittleEndian(y[208..]));
        for (int j = 0; j < QK / 16; ++j)
        {
            float d = dStored * (sbyte)groupScales[j];
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii)
                levels[16 * j + ii] = (byte)(Math.Clamp(NearestInt(x[16 * j + ii] / d), -32, 31) + 32);
        }

        for (int j = 0; j < QK; j += 128)
        {
            Span<byte> qlHalf = ql.Slice(j / 2, 64);
            Span<byte> qhHalf = qh.Slice(j / 4, 32);
            for (int l = 0; l < 32; ++l)
            {
                int q1 = levels[j + l] & 0xF;
                int q2 = levels[j + l + 32] & 0xF;
                int q3 = levels[j + l + 64] & 0xF;
                int q4 = levels[j + l + 96] & 0xF;
                qlHalf[l] = (byte)(q1 | (q3 << 4));
                qlHalf[l + 32] = (byte)(q2 | (q4 << 4));
                qhHalf[l] = (byte)((levels[j + l] >> 4) | ((levels[j + l + 32] >> 4) << 2)
                    | ((levels[j + l + 64] >> 4) << 4) | ((levels[j + l + 96] >> 4) << 6));
            }
        }
    }

    // quantize_row_q8_K_ref: d (float32) = signed max / -127, plus the sums of each 16 quants for the dot products.
    private static void BlockQ8_K(ReadOnlySpan<float> x, Span<byte> y)
    {
        float max = 0;
        float amax = 0;
        for (int j = 0; j < QK; ++j)
        {
            float ax = MathF.Abs(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (amax == 0)
        {
            y.Clear();
            return;
        }
        float iscale = -127f / max;
        Span<byte> qs = y.Slice(4, QK);
        for (int j = 0; j < QK; ++j) qs[j] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * x[j]));
        for (int j = 0; j < QK / 16; ++j)
        {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += (sbyte)qs[16 * j + ii];
            BinaryPrimitives.WriteInt16LittleEndian(y[(4 + QK + 2 * j)..], (short)sum);
        }
        BinaryPrimitives.WriteSingleLittleEndian(y, 1 / iscale);
    }
}
