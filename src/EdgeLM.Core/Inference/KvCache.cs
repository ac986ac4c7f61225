using EdgeLM.Kernels;
using EdgeLM.Tensors;

namespace EdgeLM.Inference;

/// <summary>Element type of the key/value cache.</summary>
public enum KvCacheType
{
    F32,
    /// <summary>Half the memory; keys and values are rounded to IEEE half on store.</summary>
    F16,
}

/// <summary>Keys and values of every layer: [layer, position, kvDim] each, in unmanaged memory.</summary>
public sealed unsafe class KvCache : IDisposable
{
    private readonly NativeBuffer _keys, _values;

    public int LayerCount { get; }
    public int ContextLength { get; }
    public int KvDim { get; }
    public KvCacheType Type { get; }
    public long ByteLength => _keys.Length + _values.Length;

    public KvCache(int layerCount, int contextLength, int kvDim, KvCacheType type)
    {
        if (layerCount <= 0 || contextLength <= 0 || kvDim <= 0)
            throw new ArgumentException($"kv cache of {layerCount} layers x {contextLength} positions x {kvDim}");
        if (type is not (KvCacheType.F32 or KvCacheType.F16)) throw new ArgumentException($"unsupported kv cache type {type}");
        LayerCount = layerCount;
        ContextLength = contextLength;
        KvDim = kvDim;
        Type = type;
        long bytes = checked((long)layerCount * contextLength * kvDim * ElementBytes);
        _keys = new NativeBuffer(bytes);
        _values = new NativeBuffer(bytes);
    }

    internal int ElementBytes => Type == KvCacheType.F32 ? 4 : 2;

    /// <summary>Start of layer <paramref name="layer"/>'s keys; position p starts KvDim * p elements later.</summary>
    internal byte* Keys(int layer) => _keys.Pointer + (long)layer * ContextLength * KvDim * ElementBytes;
    internal byte* Values(int layer) => _values.Pointer + (long)layer * ContextLength * KvDim * ElementBytes;

    internal void Store(int layer, int position, float* key, float* value)
    {
        long offset = ((long)layer * ContextLength + position) * KvDim * ElementBytes;
        if (Type == KvCacheType.F32)
        {
            Buffer.MemoryCopy(key, _keys.Pointer + offset, KvDim * 4L, KvDim * 4L);
            Buffer.MemoryCopy(value, _values.Pointer + offset, KvDim * 4L, KvDim * 4L);
        }
        else
        {
            RowConvert.SingleToHalf(key, (ushort*)(_keys.Pointer + offset), KvDim);
            RowConvert.SingleToHalf(value, (ushort*)(_values.Pointer + offset), KvDim);
        }
    }

    /// <summary>Overwrites positions [0, <paramref name="positions"/>) of every layer with those of <paramref name="source"/>
    /// (same layout but for the context length): a forked sequence starts from a copy of a shared prefix.</summary>
    internal void CopyPrefixFrom(KvCache source, int positions)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.LayerCount != LayerCount || source.KvDim != KvDim || source.Type != Type)
            throw new ArgumentException("the caches differ in layers, width or element type");
        if (positions < 0 || positions > ContextLength || positions > source.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(positions), $"cannot copy {positions} positions between caches of {source.ContextLength} and {ContextLength}");
        if (ReferenceEquals(source, this)) return;
        long bytes = (long)positions * KvDim * ElementBytes;
        for (int layer = 0; layer < LayerCount; layer++)
        {
            Buffer.MemoryCopy(source.Keys(layer), Keys(layer), bytes, bytes);
            Buffer.MemoryCopy(source.Values(layer), Values(layer), bytes, bytes);
        }
    }

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
