using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression;

/// <summary>What a quantizer knows about the tensor a call belongs to.</summary>
/// <param name="ColumnImportance">
/// Optional per-input-column importance (an imatrix: mean squared activation of each column), RowLength values;
/// empty when none is available. Methods that need it (awq, gptq) must fail clearly without it.
/// </param>
/// <param name="Threads">
/// Threads a method that sees the whole tensor at once (RowsAreIndependent = false) may use; the driver already spreads
/// row-independent methods over its threads and passes 1. Results must not depend on it.
/// </param>
public sealed record TensorQuantizationContext(string TensorName, GgmlType TargetType, int RowLength, long RowCount, float[]? ColumnImportance = null, int Threads = 1);

/// <summary>
/// A quantization method (the strategy behind --method): turns float rows into the block bytes of the target type.
/// The output layout is fixed by ggml (rows back to back, RowBytes(type, RowLength) each), so every method produces
/// files that EdgeLM and llama.cpp run; methods differ only in how they choose scales and levels.
/// </summary>
public interface ITensorQuantizer
{
    /// <summary>The --method name.</summary>
    string Name { get; }

    /// <summary>
    /// True when each row's bytes depend only on that row (rtn, mse): the driver then streams the tensor in chunks of
    /// rows across threads. False for methods that need the whole tensor at once (gptq's error feedback, awq's
    /// per-column scales): the driver passes all rows in one call.
    /// </summary>
    bool RowsAreIndependent { get; }

    /// <summary>
    /// Quantizes <paramref name="rows"/> (a whole number of rows of tensor.RowLength values, starting at row
    /// <paramref name="firstRow"/>) into <paramref name="output"/> (exactly RowBytes(TargetType, RowLength) per row).
    /// May be called concurrently from several threads for disjoint rows of the same tensor.
    /// </summary>
    void QuantizeRows(TensorQuantizationContext tensor, long firstRow, ReadOnlySpan<float> rows, Span<byte> output);
}

/// <summary>Round-to-nearest: llama.cpp's reference quantizers (what llama-quantize does without an imatrix).</summary>
public sealed class RtnQuantizer : ITensorQuantizer
{
    public static RtnQuantizer Instance { get; } = new();

    public string Name => "rtn";
    public bool RowsAreIndependent => true;

    public void QuantizeRows(TensorQuantizationContext tensor, long firstRow, ReadOnlySpan<float> rows, Span<byte> output) =>
        Quantize.Rows(tensor.TargetType, rows, tensor.RowLength, output);
}

public static class TensorQuantizers
{
    public static IReadOnlyList<string> Methods { get; } = ["rtn", "mse", "gptq", "awq", "autoround"];

    /// <summary>Methods that cannot work without calibration activations (--calib).</summary>
    public static bool NeedsCalibration(string method) => method.Trim().ToLowerInvariant() is "gptq" or "awq" or "autoround";

    /// <summary>
    /// The quantizer behind --method. gptq and autoround need <paramref name="calibration"/>; awq's quantizer is rtn on
    /// weights that <see cref="Compression.Methods.AwqQuantizer.Plan"/> rescaled (pass its result as QuantizeOptions.Scalings).
    /// </summary>
    public static ITensorQuantizer Create(string method, Compression.Methods.CalibrationSet? calibration = null, bool actOrder = false, int autoRoundSteps = Compression.Methods.AutoRoundQuantizer.DefaultSteps)
    {
        ArgumentNullException.ThrowIfNull(method);
        string key = method.Trim().ToLowerInvariant();
        if (!Methods.Contains(key)) throw new ArgumentException($"unknown quantization method '{method}' (available: {string.Join(", ", Methods)})");
        if (NeedsCalibration(key) && calibration == null)
            throw new ArgumentException($"quantization method '{key}' needs calibration data (--calib FILE.txt)");
        return key switch
        {
            "rtn" => RtnQuantizer.Instance,
            "mse" => Compression.Methods.MseQuantizer.Instance,
            "gptq" => new Compression.Methods.GptqQuantizer(calibration!, actOrder),
            "awq" => Compression.Methods.AwqQuantizer.Instance,
            _ => new Compression.Methods.AutoRoundQuantizer(calibration!, autoRoundSteps),
        };
    }
}
