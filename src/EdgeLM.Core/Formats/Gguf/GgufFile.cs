using System.Buffers.Binary;
using System.Text;
using EdgeLM.Tensors;

namespace EdgeLM.Formats.Gguf;

/// <summary>One entry of a GGUF tensor directory. Shape is in ggml order; Offset is relative to the data section.</summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Shape, long Offset, long ByteLength);

/// <summary>
/// A GGUF (v2 or v3, little-endian) file mapped read-only. Tensors point into the mapping and stay valid until
/// <see cref="Dispose"/>. Every count and length in the file is checked against the bytes that remain before
/// anything is allocated from it, so hostile files fail fast with <see cref="InvalidDataException"/>.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian u32
    public const int DefaultAlignment = 32;
    public const int MaxDims = 4;
    public const string AlignmentKey = "general.alignment";

    private readonly MappedFile _file;
    private readonly Dictionary<string, Tensor> _tensors;

    public string Path => _file.Path;
    public long FileLength => _file.Length;
    public int Version { get; }
    public GgufMetadata Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> TensorInfos { get; }
    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;
    /// <summary>Absolute file offset of the (aligned) tensor data section.</summary>
    public long DataOffset { get; }
    public int Alignment { get; }

    public static GgufFile Open(string path)
    {
        var file = new MappedFile(path);
        try { return new GgufFile(file); }
        catch { file.Dispose(); throw; }
    }

    private GgufFile(MappedFile file)
    {
        _file = file;
        var r = new Reader(file.Base, file.Length, file.Path);

        if (file.Length < 4) r.Fail("file is too short to be GGUF");
        uint magic = r.U32();
        if (magic != Magic) r.Fail($"not a GGUF file (magic 0x{magic:X8})");
        uint version = r.U32();
        if (version is not (2 or 3)) r.Fail($"unsupported GGUF version {version} (supported: 2, 3)");
        Version = (int)version;
        ulong tensorCount = r.U64();
        ulong kvCount = r.U64();
        // A key/value pair needs at least a key length, a type and a one-byte value; a tensor info at least
        // a name length, n_dims, one dimension, a type and an offset.
        if (kvCount > (ulong)r.Remaining / (8 + 4 + 1)) r.Fail($"metadata count {kvCount} cannot fit in the file");
        if (tensorCount > (ulong)r.Remaining / (8 + 4 + 8 + 4 + 8)) r.Fail($"tensor count {tensorCount} cannot fit in the file");

        Metadata = new GgufMetadata();
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = r.String();
            if (Metadata.Contains(key)) r.Fail($"duplicate metadata key '{key}'");
            var type = (GgufValueType)r.U32();
            Metadata.Set(key, r.Value(type, key));
        }

        Alignment = DefaultAlignment;
        if (Metadata.TryGet(AlignmentKey, out var alignValue))
        {
            long a = alignValue.Value switch
            {
                uint u => u, int s => s, ulong ul => ul > long.MaxValue ? -1 : (long)ul, long l => l,
                ushort us => us, short sh => sh, byte b => b, sbyte sb => sb,
                _ => r.Fail<long>($"{AlignmentKey} must be an integer, found {alignValue.Type}"),
            };
            if (a <= 0 || a > 1 << 30 || (a & (a - 1)) != 0) r.Fail($"{AlignmentKey} {alignValue.Value} is not a power of two (at most 2^30)");
            Alignment = (int)a;
        }

        var infos = new GgufTensorInfo[(int)tensorCount];
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < infos.Length; i++)
        {
            string name = r.String();
            if (!names.Add(name)) r.Fail($"duplicate tensor name '{name}'");
            uint nDims = r.U32();
            if (nDims is 0 or > MaxDims) r.Fail($"tensor '{name}' has {nDims} dimensions (1..{MaxDims} allowed)");
            var shape = new long[nDims];
            for (int d = 0; d < shape.Length; d++)
            {
                ulong dim = r.U64();
                if (dim == 0 || dim > long.MaxValue) r.Fail($"tensor '{name}' has invalid dimension {(long)dim}");
                shape[d] = (long)dim;
            }
            uint rawType = r.U32();
            var type = (GgmlType)rawType;
            if (!GgmlTypeInfo.IsKnown(type)) r.Fail($"tensor '{name}' has unknown type {rawType}");
            ulong offset = r.U64();
            long bytes = TensorBytes(type, shape) ?? r.Fail<long>($"tensor '{name}' shape [{string.Join(", ", shape)}] is invalid or too large for {type}");
            if (offset % (ulong)Alignment != 0) r.Fail($"tensor '{name}' offset {offset} is not a multiple of the alignment {Alignment}");
            if (offset > long.MaxValue) r.Fail($"tensor '{name}' offset {offset} is out of range");
            infos[i] = new GgufTensorInfo(name, type, shape, (long)offset, bytes);
        }

        long headerEnd = r.Position;
        DataOffset = AlignUp(headerEnd, Alignment);
        TensorInfos = infos;

        _tensors = new Dictionary<string, Tensor>(infos.Length, StringComparer.Ordinal);
        foreach (var ti in infos)
        {
            long available = file.Length - DataOffset;
            if (ti.Offset > available || ti.ByteLength > available - ti.Offset)
                r.Fail($"tensor '{ti.Name}' data ({ti.ByteLength} bytes at {ti.Offset}) extends past the end of the file");
            _tensors.Add(ti.Name, new Tensor(ti.Name, ti.Type, ti.Shape, file.Base + DataOffset + ti.Offset, ti.ByteLength));
        }

        // Overlapping tensors are a sign of a corrupt or crafted directory; real writers place them back to back.
        var byOffset = infos.OrderBy(t => t.Offset).ToArray();
        for (int i = 1; i < byOffset.Length; i++)
            if (byOffset[i - 1].Offset + byOffset[i - 1].ByteLength > byOffset[i].Offset)
                r.Fail($"tensors '{byOffset[i - 1].Name}' and '{byOffset[i].Name}' overlap");
    }

    public Tensor GetTensor(string name) =>
        _tensors.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");

    public bool TryGetTensor(string name, out Tensor tensor) => _tensors.TryGetValue(name, out tensor!);

    public void Dispose() => _file.Dispose();

    internal static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>Bytes of a tensor, or null if the shape does not fit the type's blocks or overflows.</summary>
    internal static long? TensorBytes(GgmlType type, long[] shape)
    {
        long rows = 1;
        for (int i = 1; i < shape.Length; i++)
        {
            if (shape[i] <= 0 || rows > long.MaxValue / shape[i]) return null;
            rows *= shape[i];
        }
        long n0 = shape[0];
        int blockSize = GgmlTypeInfo.BlockSize(type);
        if (n0 <= 0 || n0 % blockSize != 0) return null;
        long rowBytes = n0 / blockSize;
        int blockBytes = GgmlTypeInfo.BlockBytes(type);
        if (rowBytes > long.MaxValue / blockBytes) return null;
        rowBytes *= blockBytes;
        if (rows > long.MaxValue / rowBytes) return null;
        // ggml also needs the element count to fit in int64.
        if (rows > long.MaxValue / n0) return null;
        return rows * rowBytes;
    }

    /// <summary>Bounds-checked little-endian cursor over the mapping.</summary>
    private struct Reader(byte* basePtr, long length, string path)
    {
        private long _pos;
        public readonly long Position => _pos;
        public readonly long Remaining => length - _pos;

        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        public readonly void Fail(string message) => throw new InvalidDataException($"{path}: {message}");

        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        public readonly T Fail<T>(string message) => throw new InvalidDataException($"{path}: {message}");

        private ReadOnlySpan<byte> Take(long n, string what)
        {
            if (n < 0 || n > Remaining) Fail($"truncated file: {what} needs {n} bytes at offset {_pos}, {Remaining} left");
            var span = new ReadOnlySpan<byte>(basePtr + _pos, (int)n);
            _pos += n;
            return span;
        }

        public byte U8() => Take(1, "a u8")[0];
        public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2, "a u16"));
        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, "a u32"));
        public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, "a u64"));

        public string String()
        {
            ulong len = U64();
            if (len > (ulong)Remaining || len > int.MaxValue) Fail($"truncated file: string of {len} bytes at offset {_pos}, {Remaining} left");
            return Encoding.UTF8.GetString(Take((long)len, "a string"));
        }

        private bool Bool(string key)
        {
            byte b = U8();
            if (b > 1) Fail($"metadata '{key}' has invalid bool byte {b}");
            return b == 1;
        }

        private static int ElementSize(GgufValueType t) => t switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
            GgufValueType.String => 8, // the length prefix: the least a string element can take
            _ => 0,
        };

        public GgufValue Value(GgufValueType type, string key)
        {
            switch (type)
            {
                case GgufValueType.UInt8: return new(type, U8());
                case GgufValueType.Int8: return new(type, (sbyte)U8());
                case GgufValueType.UInt16: return new(type, U16());
                case GgufValueType.Int16: return new(type, (short)U16());
                case GgufValueType.UInt32: return new(type, U32());
                case GgufValueType.Int32: return new(type, (int)U32());
                case GgufValueType.Float32: return new(type, BitConverter.UInt32BitsToSingle(U32()));
                case GgufValueType.Bool: return new(type, Bool(key));
                case GgufValueType.String: return new(type, String());
                case GgufValueType.UInt64: return new(type, U64());
                case GgufValueType.Int64: return new(type, (long)U64());
                case GgufValueType.Float64: return new(type, BitConverter.UInt64BitsToDouble(U64()));
                case GgufValueType.Array: return Array(key);
                default: return Fail<GgufValue>($"metadata '{key}' has unknown value type {(uint)type}");
            }
        }

        private GgufValue Array(string key)
        {
            uint rawElem = U32();
            var elem = (GgufValueType)rawElem;
            if (elem == GgufValueType.Array) Fail($"metadata '{key}' is a nested array (not allowed)");
            int size = ElementSize(elem);
            if (size == 0) Fail($"metadata '{key}' is an array of unknown type {rawElem}");
            ulong count = U64();
            if (count > (ulong)(Remaining / size) || count > int.MaxValue - 64)
                Fail($"metadata '{key}' array of {count} {elem} cannot fit in the remaining {Remaining} bytes");
            int n = (int)count;
            if (elem == GgufValueType.String)
            {
                var strings = new string[n];
                for (int i = 0; i < n; i++) strings[i] = String();
                return new GgufValue(GgufValueType.Array, strings, elem);
            }
            var raw = Take((long)n * size, "an array");
            object values = elem switch
            {
                GgufValueType.UInt8 => raw.ToArray(),
                GgufValueType.Int8 => Copy<sbyte>(raw, n),
                GgufValueType.UInt16 => Copy<ushort>(raw, n),
                GgufValueType.Int16 => Copy<short>(raw, n),
                GgufValueType.UInt32 => Copy<uint>(raw, n),
                GgufValueType.Int32 => Copy<int>(raw, n),
                GgufValueType.Float32 => Copy<float>(raw, n),
                GgufValueType.UInt64 => Copy<ulong>(raw, n),
                GgufValueType.Int64 => Copy<long>(raw, n),
                GgufValueType.Float64 => Copy<double>(raw, n),
                GgufValueType.Bool => Bools(raw, key),
                _ => Fail<object>($"metadata '{key}' is an array of unknown type {rawElem}"),
            };
            return new GgufValue(GgufValueType.Array, values, elem);
        }

        private readonly bool[] Bools(ReadOnlySpan<byte> raw, string key)
        {
            var result = new bool[raw.Length];
            for (int i = 0; i < raw.Length; i++)
            {
                if (raw[i] > 1) Fail($"metadata '{key}' has invalid bool byte {raw[i]}");
                result[i] = raw[i] == 1;
            }
            return result;
        }

        private static T[] Copy<T>(ReadOnlySpan<byte> raw, int n) where T : unmanaged
        {
            var result = new T[n];
            // GGUF is little-endian; so is every platform .NET runs this engine on.
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
            raw.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(result.AsSpan()));
            return result;
        }
    }
}
