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

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
