using System.Text;

namespace EdgeLM.Tests.Formats;

/// <summary>
/// Builds GGUF bytes field by field straight from the spec (independent of GgufWriter), so tests can
/// compare the writer against it and craft hostile files.
/// </summary>
internal sealed class GgufBytes
{
    private readonly MemoryStream _ms = new();
    private readonly BinaryWriter _w;

    public GgufBytes() => _w = new BinaryWriter(_ms, Encoding.UTF8, leaveOpen: true);

    public long Length => _ms.Length;

    public GgufBytes Raw(params byte[] bytes) { _w.Write(bytes); return this; }
    public GgufBytes U8(byte v) { _w.Write(v); return this; }
    public GgufBytes U32(uint v) { _w.Write(v); return this; }   // BinaryWriter is little-endian by definition
    public GgufBytes U64(ulong v) { _w.Write(v); return this; }
    public GgufBytes Str(string s) { var b = Encoding.UTF8.GetBytes(s); U64((ulong)b.Length); _w.Write(b); return this; }

    public GgufBytes Header(uint version, ulong tensors, ulong kvs) => Raw("GGUF"u8.ToArray()).U32(version).U64(tensors).U64(kvs);

    public GgufBytes KvU32(string key, uint v) => Str(key).U32(4).U32(v);
    public GgufBytes KvString(string key, string v) => Str(key).U32(8).Str(v);

    public GgufBytes TensorInfo(string name, uint type, ulong offset, params ulong[] dims)
    {
        Str(name).U32((uint)dims.Length);
        foreach (var d in dims) U64(d);
        return U32(type).U64(offset);
    }

    public GgufBytes PadTo(int alignment)
    {
        while (_ms.Length % alignment != 0) _w.Write((byte)0);
        return this;
    }

    public GgufBytes Zeros(int n) { _w.Write(new byte[n]); return this; }

    public byte[] ToArray() { _w.Flush(); return _ms.ToArray(); }

    public string WriteTemp(string dir, string name = "t.gguf")
    {
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, ToArray());
        return path;
    }
}
