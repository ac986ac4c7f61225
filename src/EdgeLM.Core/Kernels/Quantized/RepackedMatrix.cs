using System.Runtime.InteropServices;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// A Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 weight matrix rearranged for the panel kernels (ggml-cpu's "repack", block_q4_0x8): rows are
/// grouped in panels of <see cref="PanelRows"/>, and each 32-element block column of a panel is stored as one
/// record in which every 32-byte group holds 4 consecutive elements of each of the 8 rows (4 bytes per row, row i
/// at bytes 4i..4i+3). A 256-bit register then carries one 4-element slice of 8 rows, the activation bytes are
/// broadcast, and the 8 integer sums land in the 8 lanes: one lane per output row, no horizontal sums.
/// <para>Record of one block column (panel p, block b at <c>Data + (p * Blocks + b) * BlockBytes</c>):</para>
/// <list type="bullet">
/// <item>bytes 0..15: the 8 rows' scales d, IEEE halves exactly as in the file.</item>
/// <item>Q4_1 / Q5_1 only, bytes 16..31: the 8 rows' mins m (value = d * u + m, u the unsigned level).</item>
/// <item>Q5_0 / Q5_1 only, 32 bytes: the fifth bits. Byte 4i+q (row i, q = 0..3) has bit j = fifth bit of element 4j+q
/// (j = 0..3) and bit 4+j = fifth bit of element 16+4j+q: one 16-bit shift and a mask move group j's bits to 0x10.</item>
/// <item>Q4_0 / Q4_1 / Q5_0 / Q5_1, 4 groups of 32 bytes (<see cref="NibbleOffset"/>): group j, row i = the file's qs[4j..4j+3] of that row (low nibbles are
/// elements 4j..4j+3, high nibbles 16+4j..16+4j+3).</item>
/// <item>Q8_0, 8 groups of 32 bytes: group j, row i = the row's levels 4j..4j+3.</item>
/// </list>
/// Q4_K, Q5_K and Q6_K records (256 values per row, Q8_K activations) are laid out as <see cref="KPanelKernels"/> describes.
/// F32, F16 and BF16 records hold 32 values of each of the 8 rows, value-major ([32][8], the file's element type), so
/// a panel is its rows transposed, [k][8]: <see cref="FloatPanelKernels"/> load one value of all 8 rows with one load
/// and keep one fused multiply-add chain per output.
/// Same bytes per weight as the file (Q4_K: 3% more, Q5_K 2%, their scales unpacked), so the packed copy replaces the mapped
/// pages rather than adding to them.
/// </summary>
public sealed unsafe class RepackedMatrix : IDisposable
{
    public const int PanelRows = 8;

    private readonly NativeMemoryOwner _memory;

    public GgmlType Type { get; }
    /// <summary>Output rows (a multiple of <see cref="PanelRows"/>).</summary>
    public int Rows { get; }
    /// <summary>Row length in elements (a multiple of 32).</summary>
    public int RowLength { get; }
    public int Blocks => RowLength / BlockSize(Type);
    public int BlockBytes { get; }
    public long ByteLength { get; }
    public byte* Data => _memory.Pointer;
    /// <summary>Bytes from one panel to the next.</summary>
    public long PanelStride => (long)Blocks * BlockBytes;

    private RepackedMatrix(GgmlType type, int rows, int rowLength)
    {
        Type = type;
        Rows = rows;
        RowLength = rowLength;
        BlockBytes = RecordBytes(type);
        ByteLength = (long)rows / PanelRows * (rowLength / BlockSize(type)) * BlockBytes;
        _memory = new NativeMemoryOwner(ByteLength);
    }

    /// <summary>Whether a weight of this type and shape can be packed (rows not a multiple of 8 keep the file layout).</summary>
    public static bool CanPack(Tensor w) =>
        RecordBytes(w.Type) > 0 && w.Shape.Length == 2 && w.RowCount % PanelRows == 0 && w.RowCount <= int.MaxValue && w.RowLength % BlockSize(w.Type) == 0;

    /// <summary>Values per record of one row: 256 for the k-quants (<see cref="KPanelKernels"/>), 32 otherwise.</summary>
    public static int BlockSize(GgmlType type) => IsKQuant(type) ? GgmlTypeInfo.QK_K : 32;

    /// <summary>Whether the type's panels are k-quant records (Q8_K activations, <see cref="KPanelKernels"/>).</summary>
    public static bool IsKQuant(GgmlType type) => type is GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>Whether the type's panels are transposed float rows (<see cref="FloatPanelKernels"/>).</summary>
    public static bool IsFloat(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>Bytes of one block column of a panel, 0 for types that have no panel layout.</summary>
    public static int RecordBytes(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => 16 + 128,
        GgmlType.Q4_1 => 32 + 128,
        GgmlType.Q5_0 => 16 + 32 + 128,
        GgmlType.Q5_1 => 32 + 32 + 128,
        GgmlType.Q8_0 => 16 + 256,
        GgmlType.Q4_K => KPanelKernels.Q4KRecordBytes,
        GgmlType.Q5_K => KPanelKernels.Q5KRecordBytes,
        GgmlType.Q6_K => KPanelKernels.Q6KRecordBytes,
        GgmlType.F32 => 32 * PanelRows * sizeof(float),
        GgmlType.F16 or GgmlType.BF16 => 32 * PanelRows * sizeof(ushort),
        _ => 0,
    };

    /// <summary>Whether the type's levels are unsigned with a per-row min (value = d * u + m): Q4_1, Q5_1.</summary>
    public static bool HasMin(GgmlType type) => type is GgmlType.Q4_1 or GgmlType.Q5_1;

    /// <summary>Record offset of the fifth bits (Q5_0, Q5_1).</summary>
    internal static int FifthBitsOffset(GgmlType type) => HasMin(type) ? 32 : 16;

    /// <summary>Record offset of the nibble groups (Q4_0, Q4_1, Q5_0, Q5_1).</summary>
    internal static int NibbleOffset(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => 16,
        GgmlType.Q4_1 => 32,
        GgmlType.Q5_0 => 48,
        _ => 64,
    };

    /// <summary>
    /// An empty matrix for <paramref name="w"/>, to be filled by <see cref="PackPanels"/>; null when the tensor cannot be
    /// packed. Nothing of the tensor is read here: a scan of its scales would fault every page of the mapped file in
    /// before packing could release them, and resident memory would peak at a second copy of the largest tensor.
    /// </summary>
    public static RepackedMatrix? Create(Tensor w)
    {
        ArgumentNullException.ThrowIfNull(w);
        return CanPack(w) ? new RepackedMatrix(w.Type, (int)w.RowCount, w.RowLength) : null;
    }

    /// <summary>
    /// Packs panels [begin, end) of <paramref name="w"/> (the tensor this matrix was created for). False when a scale (or
    /// an F16 weight) is an infinity or a NaN (exponent 31, never produced by a quantizer): the caller then drops the
    /// matrix and the tensor stays unpacked, so the kernels' exact half conversion never has to handle them.
    /// </summary>
    public bool PackPanels(Tensor w, int begin, int end)
    {
        if (IsFloat(Type)) return PackFloatPanels(w, begin, end);
        int nonFinite = 0;
        long rowStride = w.RowStride;
        int blocks = Blocks, fileBlock = GgmlTypeInfo.BlockBytes(Type);
        for (int p = begin; p < end; p++)
        {
            byte* panel = Data + p * PanelStride;
            byte* rows = w.Data + (long)p * PanelRows * rowStride;
            if (IsKQuant(Type))
            {
                for (int b = 0; b < blocks; b++)
                    nonFinite |= KPanelKernels.PackRecord(Type, rows, rowStride, b, panel + (long)b * BlockBytes) ? 0 : 1;
                continue;
            }
            for (int b = 0; b < blocks; b++)
            {
                byte* record = panel + (long)b * BlockBytes;
                for (int i = 0; i < PanelRows; i++)
                {
                    byte* src = rows + i * rowStride + (long)b * fileBlock;
                    ushort scale = *(ushort*)src;
                    nonFinite |= (scale & 0x7C00) == 0x7C00 ? 1 : 0;
                    *(ushort*)(record + 2 * i) = scale;
                    if (HasMin(Type))
                    {
                        ushort min = *(ushort*)(src + 2);
                        nonFinite |= (min & 0x7C00) == 0x7C00 ? 1 : 0;
                        *(ushort*)(record + 16 + 2 * i) = min;
                    }
                    switch (Type)
                    {
                        case GgmlType.Q4_0:
                        case GgmlType.Q4_1:
                            int headerBytes = Type == GgmlType.Q4_0 ? 2 : 4, nibbles = NibbleOffset(Type);
                            for (int j = 0; j < 4; j++) *(uint*)(record + nibbles + 32 * j + 4 * i) = *(uint*)(src + headerBytes + 4 * j);
                            break;
                        case GgmlType.Q8_0:
                            for (int j = 0; j < 8; j++) *(uint*)(record + 16 + 32 * j + 4 * i) = *(uint*)(src + 2 + 4 * j);
                            break;
                        case GgmlType.Q5_0:
                        case GgmlType.Q5_1:
                            int qhAt = Type == GgmlType.Q5_0 ? 2 : 4, fifth = FifthBitsOffset(Type), nibbles5 = NibbleOffset(Type);
                            uint qh = *(uint*)(src + qhAt);
                            for (int q = 0; q < 4; q++)
                            {
                                int bits = 0;
                                for (int j = 0; j < 4; j++)
                                {
                                    bits |= (int)((qh >> (4 * j + q)) & 1) << j;
                                    bits |= (int)((qh >> (16 + 4 * j + q)) & 1) << (4 + j);
                                }
                                record[fifth + 4 * i + q] = (byte)bits;
                            }
                            for (int j = 0; j < 4; j++) *(uint*)(record + nibbles5 + 32 * j + 4 * i) = *(uint*)(src + qhAt + 4 + 4 * j);
                            break;
                    }
                }
            }
        }
        return nonFinite == 0;
    }

    private bool PackFloatPanels(Tensor w, int begin, int end)
    {
        long rowStride = w.RowStride;
        int k = RowLength;
        if (Type == GgmlType.F32)
        {
            for (int p = begin; p < end; p++)
            {
                float* panel = (float*)(Data + p * PanelStride);
                for (int i = 0; i < PanelRows; i++)
                {
                    float* row = (float*)(w.Data + ((long)p * PanelRows + i) * rowStride);
                    for (int e = 0; e < k; e++) panel[e * PanelRows + i] = row[e];
                }
            }
            return true;
        }
        int special = 0;
        for (int p = begin; p < end; p++)
        {
            ushort* panel = (ushort*)(Data + p * PanelStride);
            for (int i = 0; i < PanelRows; i++)
            {
                ushort* row = (ushort*)(w.Data + ((long)p * PanelRows + i) * rowStride);
                for (int e = 0; e < k; e++)
                {
                    ushort h = row[e];
                    special |= (h & 0x7C00) == 0x7C00 ? 1 : 0;
                    panel[e * PanelRows + i] = h;
                }
            }
        }
        // BF16 converts exactly by a shift whatever the value; F16's in-register conversion is exact for finite halves only.
        return Type == GgmlType.BF16 || special == 0;
    }

    /// <summary>Packs the whole tensor on the calling thread (tests, benchmarks); null when it cannot be packed.</summary>
    public static RepackedMatrix? Pack(Tensor w)
    {
        var packed = Create(w);
        return packed is not null && packed.PackPanels(w, 0, packed.Rows / PanelRows) ? packed : null;
    }

    /// <summary>
    /// The weight's level of element e of row i in panel p and block b, as in the file: signed for Q4_0 / Q5_0 / Q8_0
    /// (value = d * level), unsigned for Q4_1 / Q5_1 (value = d * level + m). The scalar kernels' view of the layout.
    /// </summary>
    internal static int Level(GgmlType type, byte* record, int i, int e)
    {
        int j = (e & 15) >> 2, q = e & 3;
        if (type == GgmlType.Q8_0) return (sbyte)record[16 + 32 * (e >> 2) + 4 * i + q];
        byte packed = record[NibbleOffset(type) + 32 * j + 4 * i + q];
        int u = e < 16 ? packed & 0x0F : packed >> 4;
        if (type is GgmlType.Q5_0 or GgmlType.Q5_1) u |= ((record[FifthBitsOffset(type) + 4 * i + q] >> (e < 16 ? j : 4 + j)) & 1) << 4;
        return type switch
        {
            GgmlType.Q4_0 => u - 8,
            GgmlType.Q5_0 => u - 16,
            _ => u,
        };
    }

    /// <summary>
    /// Row <paramref name="row"/> as floats, bitwise equal to Dequantize.Row of the file's row (level * d): lets the
    /// tied embedding read the packed copy, so its file pages, released after packing, are not faulted back in.
    /// </summary>
    public void DequantizeRow(long row, float* dst)
    {
        if ((ulong)row >= (ulong)Rows) throw new ArgumentOutOfRangeException(nameof(row), $"row {row} is not in 0..{Rows - 1}");
        byte* panel = Data + row / PanelRows * PanelStride;
        int i = (int)(row % PanelRows);
        if (IsFloat(Type))
        {
            for (int e = 0; e < RowLength; e++) dst[e] = FloatPanelKernels.Value(Type, panel, (long)e * PanelRows + i);
            return;
        }
        if (IsKQuant(Type))
        {
            for (int b = 0; b < Blocks; b++)
                KPanelKernels.DequantizeRecordRow(Type, panel + (long)b * BlockBytes, i, dst + b * GgmlTypeInfo.QK_K);
            return;
        }
        const int blockSize = 32;
        for (int b = 0; b < Blocks; b++)
        {
            byte* record = panel + (long)b * BlockBytes;
            float d = EdgeLM.Tensors.Quantization.HalfPrecision.FromF16(*(ushort*)(record + 2 * i));
            if (HasMin(Type))
            {
                // As Dequantize.Row: u * d + m, two roundings.
                float m = EdgeLM.Tensors.Quantization.HalfPrecision.FromF16(*(ushort*)(record + 16 + 2 * i));
                for (int e = 0; e < blockSize; e++) dst[b * blockSize + e] = Level(Type, record, i, e) * d + m;
                continue;
            }
            for (int e = 0; e < blockSize; e++) dst[b * blockSize + e] = Level(Type, record, i, e) * d;
        }
    }

    /// <summary>Frees the packed bytes now; no kernel may use the matrix afterwards (its model is being disposed).</summary>
    public void Dispose() => _memory.Free();

    /// <summary>Owns the packed bytes; freed by <see cref="Dispose"/>, else when the matrix is collected.</summary>
    private sealed class NativeMemoryOwner
    {
        public byte* Pointer { get; private set; }

        public NativeMemoryOwner(long length)
        {
            Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, length), 64);
            GC.AddMemoryPressure(Math.Max(1, length));
            _length = Math.Max(1, length);
        }

        private readonly long _length;

        public void Free()
        {
            if (Pointer == null) return;
            NativeMemory.AlignedFree(Pointer);
            Pointer = null;
            GC.RemoveMemoryPressure(_length);
            GC.SuppressFinalize(this);
        }

        ~NativeMemoryOwner() => Free();
    }
}
