using System.Globalization;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Compression.Pruning;

/// <summary>
/// A model without some of its transformer blocks, as views of the original tensors: the kept blocks are renumbered
/// consecutively (blk.5.* becomes blk.4.* when one earlier block is gone) and nothing is copied.
/// </summary>
public static class LayerRemoval
{
    /// <summary>The tensors with the removed blocks left out and the rest renamed to their new block numbers.</summary>
    public static unsafe Dictionary<string, Tensor> RenumberedTensors(IReadOnlyDictionary<string, Tensor> tensors, int layerCount, IReadOnlyCollection<int> removed)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        int[] newIndex = NewIndices(layerCount, removed);
        var result = new Dictionary<string, Tensor>(tensors.Count, StringComparer.Ordinal);
        foreach (var (name, t) in tensors)
        {
            string? renamed = Rename(name, newIndex);
            if (renamed is null) continue;
            result.Add(renamed, renamed == t.Name ? t : new Tensor(renamed, t.Type, t.Shape, t.Data, t.ByteLength));
        }
        return result;
    }

    /// <summary>The name of a tensor after the removal, or null when it belongs to a removed block.</summary>
    public static string? Rename(string name, int[] newIndex)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return name;
        int dot = name.IndexOf('.', 4);
        if (dot < 0 || !int.TryParse(name.AsSpan(4, dot - 4), NumberStyles.None, CultureInfo.InvariantCulture, out int layer)
            || (uint)layer >= (uint)newIndex.Length)
            throw new InvalidDataException($"tensor '{name}' belongs to no block of a {newIndex.Length}-block model");
        int to = newIndex[layer];
        return to < 0 ? null : string.Create(CultureInfo.InvariantCulture, $"blk.{to}{name.AsSpan(dot)}");
    }

    /// <summary>For every original block its new number, or -1 when removed.</summary>
    public static int[] NewIndices(int layerCount, IReadOnlyCollection<int> removed)
    {
        ArgumentNullException.ThrowIfNull(removed);
        var gone = new HashSet<int>();
        foreach (int r in removed)
        {
            if ((uint)r >= (uint)layerCount) throw new ArgumentException($"block {r} does not exist (the model has blocks 0..{layerCount - 1})");
            if (!gone.Add(r)) throw new ArgumentException($"block {r} is listed twice");
        }
        if (gone.Count >= layerCount) throw new ArgumentException($"cannot remove {gone.Count} of {layerCount} blocks: at least one must remain");
        var map = new int[layerCount];
        for (int i = 0, next = 0; i < layerCount; i++) map[i] = gone.Contains(i) ? -1 : next++;
        return map;
    }

    public static ModelConfig Config(ModelConfig config, IReadOnlyCollection<int> removed) =>
        config with { LayerCount = config.LayerCount - NewIndices(config.LayerCount, removed).Count(i => i < 0) };

    /// <summary>Config and weights of the model without the removed blocks, pointing into the original's memory.</summary>
    public static (ModelConfig Config, ModelWeights Weights) View(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyCollection<int> removed)
    {
        var pruned = Config(config, removed);
        return (pruned, new ModelWeights(pruned, RenumberedTensors(tensors, config.LayerCount, removed)));
    }
}
