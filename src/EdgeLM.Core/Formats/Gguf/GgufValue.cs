namespace EdgeLM.Formats.Gguf;

/// <summary>GGUF metadata value types (gguf_type).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>
/// One metadata value. Scalars are boxed .NET primitives of the matching type (byte, sbyte, ushort, short,
/// uint, int, float, bool, string, ulong, long, double); arrays are typed .NET arrays of those
/// (for example string[] for tokenizer.ggml.tokens, int[] for tokenizer.ggml.token_type) with
/// <see cref="ElementType"/> giving the GGUF element type. Nested arrays are rejected.
/// </summary>
public readonly record struct GgufValue(GgufValueType Type, object Value, GgufValueType ElementType = GgufValueType.UInt8)
{
    public static GgufValue Of(string s) => new(GgufValueType.String, s);
    public static GgufValue Of(uint v) => new(GgufValueType.UInt32, v);
    public static GgufValue Of(int v) => new(GgufValueType.Int32, v);
    public static GgufValue Of(float v) => new(GgufValueType.Float32, v);
    public static GgufValue Of(bool v) => new(GgufValueType.Bool, v);
    public static GgufValue Of(ulong v) => new(GgufValueType.UInt64, v);
    public static GgufValue Of(string[] v) => new(GgufValueType.Array, v, GgufValueType.String);
    public static GgufValue Of(int[] v) => new(GgufValueType.Array, v, GgufValueType.Int32);
    public static GgufValue Of(float[] v) => new(GgufValueType.Array, v, GgufValueType.Float32);

    public override string ToString() => Type == GgufValueType.Array
        ? $"[{ElementType} x {((Array)Value).Length}]"
        : Value.ToString() ?? "";
}

/// <summary>Ordered GGUF key/value metadata with typed accessors that fail with a clear message.</summary>
public sealed class GgufMetadata
{
    private readonly List<string> _order = new();
    private readonly Dictionary<string, GgufValue> _values = new(StringComparer.Ordinal);

    public IEnumerable<KeyValuePair<string, GgufValue>> Entries => _order.Select(k => new KeyValuePair<string, GgufValue>(k, _values[k]));
    public int Count => _order.Count;

    public void Set(string key, GgufValue value)
    {
        if (!_values.ContainsKey(key)) _order.Add(key);
        _values[key] = value;
    }

    public bool Remove(string key) => _values.Remove(key) && _order.Remove(key);

    public bool Contains(string key) => _values.ContainsKey(key);

    public bool TryGet(string key, out GgufValue value) => _values.TryGetValue(key, out value);

    public string? GetString(string key) => _values.TryGetValue(key, out var v) && v.Value is string s ? s : null;

    /// <summary>Any integer scalar as long; null when absent. Throws if present with a non-integer type.</summary>
    public long? GetInteger(string key)
    {
        if (!_values.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            byte b => b, sbyte sb => sb, ushort us => us, short s => s, uint u => u, int i => i,
            ulong ul => ul > long.MaxValue ? throw new InvalidDataException($"metadata '{key}' is out of range") : (long)ul,
            long l => l,
            _ => throw new InvalidDataException($"metadata '{key}' should be an integer, found {v.Type}"),
        };
    }

    public double? GetFloat(string key)
    {
        if (!_values.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            float f => f, double d => d,
            byte or sbyte or ushort or short or uint or int or ulong or long => Convert.ToDouble(v.Value),
            _ => throw new InvalidDataException($"metadata '{key}' should be a number, found {v.Type}"),
        };
    }

    public bool? GetBool(string key) => _values.TryGetValue(key, out var v) && v.Value is bool b ? b : null;

    public string[]? GetStringArray(string key) => _values.TryGetValue(key, out var v) && v.Value is string[] a ? a : null;

    /// <summary>An integer array of any element type, widened to int; null when absent.</summary>
    public int[]? GetInt32Array(string key)
    {
        if (!_values.TryGetValue(key, out var v)) return null;
        return v.Value switch
        {
            int[] a => a,
            uint[] a => a.Select(x => checked((int)x)).ToArray(),
            byte[] a => a.Select(x => (int)x).ToArray(),
            sbyte[] a => a.Select(x => (int)x).ToArray(),
            short[] a => a.Select(x => (int)x).ToArray(),
            ushort[] a => a.Select(x => (int)x).ToArray(),
            long[] a => a.Select(x => checked((int)x)).ToArray(),
            ulong[] a => a.Select(x => checked((int)x)).ToArray(),
            _ => throw new InvalidDataException($"metadata '{key}' should be an integer array, found {v.Type}"),
        };
    }

    public float[]? GetFloatArray(string key) => _values.TryGetValue(key, out var v) && v.Value is float[] a ? a : null;
}
