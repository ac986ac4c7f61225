using System.Globalization;
using System.Text;
using System.Text.Json;
using EdgeLM.Formats;

namespace EdgeLM.Evaluation;

/// <summary>
/// Fetches a task split from the Hugging Face datasets-server rows API (paged, 100 rows a request) and caches it in
/// the local layout <see cref="TaskDataset"/> reads. EDGELM_DATASETS_ENDPOINT overrides the server (mirrors, tests).
/// </summary>
public sealed class DatasetDownloader(HttpClient http, string? endpoint = null)
{
    public const string EndpointVariable = "EDGELM_DATASETS_ENDPOINT";
    public const string DefaultEndpoint = "https://datasets-server.huggingface.co";
    private const int PageSize = 100;
    /// <summary>Larger than every supported split; a server claiming more is refused instead of paged forever.</summary>
    private const int MaxRows = 1_000_000;

    public string Endpoint { get; } = (endpoint ?? EndpointFromEnvironment()).TrimEnd('/');

    private static string EndpointFromEnvironment() =>
        Environment.GetEnvironmentVariable(EndpointVariable) is { Length: > 0 } e ? e : DefaultEndpoint;

    /// <summary>Downloads the split into dataDir/&lt;task&gt;/ (atomically) and returns the number of rows.</summary>
    public async Task<int> DownloadAsync(string dataDir, EvalTask task, SplitSource split, Action<int, int>? progress = null,
        CancellationToken cancel = default)
    {
        var rows = new List<string>();
        int total = -1;
        for (int offset = 0; total < 0 || offset < total; offset += PageSize)
        {
            string url = $"{Endpoint}/rows?dataset={Uri.EscapeDataString(split.HfDataset)}&config={Uri.EscapeDataString(split.HfConfig)}" +
                         $"&split={Uri.EscapeDataString(split.HfSplit)}&offset={offset}&length={PageSize}";
            using var response = await http.GetAsync(url, cancel).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
                throw new IOException($"{url}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            byte[] body = await response.Content.ReadAsByteArrayAsync(cancel).ConfigureAwait(false);
            int added = ParsePage(body, url, rows, out int pageTotal);
            if (total < 0)
            {
                if (pageTotal < 0 || pageTotal > MaxRows) throw new InvalidDataException($"{url}: num_rows_total {pageTotal} is not in 0..{MaxRows}");
                total = pageTotal;
            }
            if (added == 0 && rows.Count < total) throw new InvalidDataException($"{url}: empty page before row {total}");
            progress?.Invoke(rows.Count, total);
        }
        if (rows.Count != total) throw new InvalidDataException($"{split.HfDataset}: got {rows.Count} rows, the server announced {total}");

        string folder = Path.Combine(dataDir, task.Name);
        Directory.CreateDirectory(folder);
        if (split.LabelsFileName is null)
            AtomicFile.Write(Path.Combine(folder, split.FileName), s => WriteLines(s, rows));
        else
        {
            // PIQA's original layout keeps labels apart from the items.
            var items = new List<string>(rows.Count);
            var labels = new List<string>(rows.Count);
            foreach (var row in rows) { var (item, label) = SplitLabel(row); items.Add(item); labels.Add(label); }
            AtomicFile.Write(Path.Combine(folder, split.LabelsFileName), s => WriteLines(s, labels));
            AtomicFile.Write(Path.Combine(folder, split.FileName), s => WriteLines(s, items));
        }
        return rows.Count;
    }

    private static int ParsePage(byte[] body, string url, List<string> rows, out int total)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body); }
        catch (JsonException e) { throw new InvalidDataException($"{url}: response is not JSON ({e.Message})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("rows", out var list) || list.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{url}: response has no 'rows' list");
            total = root.TryGetProperty("num_rows_total", out var t) && t.TryGetInt32(out int n) ? n : -1;
            int added = 0;
            foreach (var entry in list.EnumerateArray())
            {
                if (entry.ValueKind != JsonValueKind.Object || !entry.TryGetProperty("row", out var row) || row.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"{url}: a rows entry has no 'row' object");
                if (entry.TryGetProperty("truncated_cells", out var truncated) && truncated.ValueKind == JsonValueKind.Array && truncated.GetArrayLength() > 0)
                    throw new InvalidDataException($"{url}: the server truncated cells of row {rows.Count}");
                rows.Add(Compact(row));
                added++;
            }
            return added;
        }
    }

    private static string Compact(JsonElement row)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer)) row.WriteTo(w);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static (string Item, string Label) SplitLabel(string rowJson)
    {
        using var doc = JsonDocument.Parse(rowJson);
        string label = doc.RootElement.TryGetProperty("label", out var l)
            ? l.ValueKind == JsonValueKind.Number ? l.GetRawText() : l.GetString() ?? ""
            : throw new InvalidDataException("a PIQA row has no 'label'");
        if (!int.TryParse(label, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            throw new InvalidDataException($"PIQA label '{label}' is not a whole number");
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer))
        {
            w.WriteStartObject();
            foreach (var p in doc.RootElement.EnumerateObject())
                if (p.Name != "label") p.WriteTo(w);
            w.WriteEndObject();
        }
        return (Encoding.UTF8.GetString(buffer.ToArray()), label);
    }

    private static void WriteLines(Stream stream, List<string> lines)
    {
        using var writer = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true) { NewLine = "\n" };
        foreach (var line in lines) writer.WriteLine(line);
    }
}
