using System.Buffers.Binary;
using EdgeLM.Compression.Rewriting;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Compression.Lora;

/// <summary>
/// Merges a LoRA adapter into a model: W' = W + scale·B·A.
/// <para>Float bases (F32/F16/BF16) keep each tensor's type: every row is widened, the delta added in double and the
/// sum rounded back once.</para>
/// <para>QA-LoRA (Xu et al. 2023) adapters act on group-pooled inputs, so B·A is constant within each quantization
/// group along the input dimension. For an asymmetric group-quantized base (Q4_1, Q5_1: x = d·q + m per block of 32)
/// the delta of a group then only moves the block's min: m' = m + delta. The quantized codes and scales are untouched
/// and the model stays exactly in its format; the only rounding is m' to fp16.</para>
/// </summary>
public static class LoraMerger
{
    public const int QuantGroup = 32;

    /// <summary>Checks that every adapted weight exists, has matching shape and a type the chosen merge handles.</summary>
    public static void Validate(LoadedModel model, LoraAdapter adapter, bool qaLora)
    {
        foreach (var m in adapter.Modules)
        {
            if (!model.Tensors.TryGetValue(m.WeightName, out var w))
                throw new InvalidDataException($"adapter module '{m.HfModule}': the base model has no tensor '{m.WeightName}'");
            int inFeatures = w.RowLength;
            long outFeatures = w.RowCount;
            bool widthOk = m.AColumns == inFeatures || (qaLora && m.AColumns > 0 && inFeatures % m.AColumns == 0 && (inFeatures / m.AColumns) % QuantGroup == 0);
            if (w.Shape.Length != 2 || m.OutFeatures != outFeatures || !widthOk)
                throw new InvalidDataException($"adapter module '{m.HfModule}': lora_B·lora_A is [{m.OutFeatures}, {m.AColumns}], " +
                    $"but the base weight '{m.WeightName}' is [{outFeatures}, {inFeatures}] (out, in)");
            if (qaLora)
            {
                if (w.Type is not (GgmlType.Q4_1 or GgmlType.Q5_1))
                    throw new InvalidDataException($"--qa-lora merges into the mins of Q4_1/Q5_1 weights; '{m.WeightName}' is {w.Type}");
            }
            else if (w.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
                throw new InvalidDataException($"'{m.WeightName}' is {w.Type}: merge-lora merges into F32/F16/BF16 weights (--qa-lora merges into Q4_1/Q5_1)");
        }
        if (qaLora)
            foreach (var m in adapter.Modules) CheckGroupConstant(m, adapter.Scale, model.Tensors[m.WeightName].RowLength);
    }

    /// <summary>The merged model's tensors (in source order); adapted weights are computed as they are written.</summary>
    public static List<OutputTensor> MergedTensors(LoadedModel model, LoraAdapter adapter, bool qaLora)
    {
        Validate(model, adapter, qaLora);
        var byWeight = adapter.Modules.ToDictionary(m => m.WeightName, StringComparer.Ordinal);
        var result = new List<OutputTensor>();
        foreach (var (name, t) in model.Tensors)
        {
            if (!byWeight.TryGetValue(name, out var module)) { result.Add(OutputTensor.CopyOf(name, t)); continue; }
            result.Add(new OutputTensor(name, t.Type, t.Shape, qaLora
                ? stream => WriteQaMerged(t, module, adapter.Scale, stream)
                : stream => WriteFloatMerged(t, module, adapter.Scale, stream)));
        }
        return result;
    }

    /// <summary>Writes the merged model as GGUF or (float merges only) a Hugging Face folder; returns a warning or null.</summary>
    public static string? Write(LoadedModel model, LoraAdapter adapter, bool qaLora, string output, bool folder)
    {
        if (folder && qaLora) throw new ArgumentException("a QA-LoRA merge stays quantized, so it is written as GGUF; give OUT a .gguf name");
        var tensors = MergedTensors(model, adapter, qaLora);
        if (folder) return ModelRewriter.WriteHuggingFace(output, model, model.Config, tensors);
        ModelRewriter.WriteGguf(output, ModelRewriter.BuildMetadata(model, model.Config), tensors);
        return null;
    }

    /// <summary>Row o of scale·B·A over the A columns (double accumulation).</summary>
    public static void DeltaRow(LoraModule m, double scale, long row, Span<double> delta)
    {
        delta.Clear();
        int cols = m.AColumns;
        for (int k = 0; k < m.Rank; k++)
        {
            double c = scale * m.B[row * m.Rank + k];
            if (c == 0) continue;
            var a = m.A.AsSpan(k * cols, cols);
            for (int i = 0; i < cols; i++) delta[i] += c * a[i];
        }
    }

    private static void WriteFloatMerged(Tensor w, LoraModule m, double scale, Stream output)
    {
        int n = w.RowLength;
        var row = new float[n];
        var delta = new double[n];
        var bytes = new byte[GgmlTypeInfo.RowBytes(w.Type, n)];
        for (long o = 0; o < w.RowCount; o++)
        {
            RowConvert.Row(w, o, row);
            DeltaRow(m, scale, o, delta);
            for (int i = 0; i < n; i++) row[i] = (float)(row[i] + delta[i]);
            Quantize.Row(w.Type, row, bytes);
            output.Write(bytes);
        }
    }

    /// <summary>Per group of the input dimension, the delta every weight of the group receives.</summary>
    private static void GroupDeltas(LoraModule m, double scale, long row, int inFeatures, Span<double> work, Span<double> groups)
    {
        DeltaRow(m, scale, row, work);
        if (m.AColumns == inFeatures)
        {
            for (int g = 0; g < groups.Length; g++) groups[g] = work[g * QuantGroup];
            return;
        }
        // Pooled A (QA-LoRA's AvgPool·group_size): column j covers inFeatures / AColumns inputs, a multiple of 32.
        int span = inFeatures / m.AColumns / QuantGroup;
        for (int g = 0; g < groups.Length; g++) groups[g] = work[g / span];
    }

    private static void CheckGroupConstant(LoraModule m, double scale, int inFeatures)
    {
        if (m.AColumns != inFeatures) return; // pooled A (checked to cover whole groups): constant by construction
        var delta = new double[m.AColumns];
        for (long o = 0; o < m.OutFeatures; o++)
        {
            DeltaRow(m, scale, o, delta);
            double magnitude = 0;
            foreach (double d in delta) magnitude = Math.Max(magnitude, Math.Abs(d));
            double tolerance = 1e-6 * magnitude;
            for (int g = 0; g < m.AColumns; g += QuantGroup)
                for (int i = g + 1; i < g + QuantGroup; i++)
                    if (Math.Abs(delta[i] - delta[g]) > tolerance)
                        throw new InvalidDataException($"adapter module '{m.HfModule}' is not a QA-LoRA adapter: B·A varies within the {QuantGroup}-input group at column {g} of row {o}");
        }
    }

    private static unsafe void WriteQaMerged(Tensor w, LoraModule m, double scale, Stream output)
    {
        int n = w.RowLength, groups = n / QuantGroup;
        int blockBytes = (int)GgmlTypeInfo.BlockBytes(w.Type);
        var bytes = new byte[w.RowStride];
        var work = new double[m.AColumns];
        var deltas = new double[groups];
        for (long o = 0; o < w.RowCount; o++)
        {
            new ReadOnlySpan<byte>(w.Data + o * w.RowStride, bytes.Length).CopyTo(bytes);
            GroupDeltas(m, scale, o, n, work, deltas);
            for (int g = 0; g < groups; g++)
            {
                // block_q4_1 / block_q5_1 start with fp16 d then fp16 m.
                var min = bytes.AsSpan(g * blockBytes + 2, 2);
                double merged = (double)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(min)) + deltas[g];
                // One rounding, straight from the exact sum to fp16.
                var half = (Half)merged;
                if (!Half.IsFinite(half))
                    throw new InvalidDataException($"'{w.Name}': merged min {merged} of block {g} in row {o} overflows fp16");
                BinaryPrimitives.WriteUInt16LittleEndian(min, BitConverter.HalfToUInt16Bits(half));
            }
            output.Write(bytes);
        }
    }
}
