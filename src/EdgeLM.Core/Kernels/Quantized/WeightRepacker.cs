using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Kernels.Quantized;

/// <summary>
/// Repacks a model's Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q4_K / Q5_K / Q6_K and float matrices into <see cref="RepackedMatrix"/> panels when a session is prepared,
/// and hands MatMul the packed form of a tensor. The packed matrix is attached to its Tensor object (it lives exactly
/// as long as the tensor), so sessions sharing weights pack once. Environment EDGELM_REPACK=0 turns packing off.
/// <para>
/// Memory: once a tensor is packed, its pages of the mapped file are dropped from the resident set (Linux
/// madvise(MADV_DONTNEED) on the page-aligned inside of the tensor's range), so resident memory holds one copy of
/// the weights, not two. The mapping stays valid: a later read of the tensor (the tied embedding's row lookups,
/// a reference computation) faults the touched pages back in from the file. Only read-only file-backed mappings
/// are released (checked in /proc/self/maps): dropping pages of anonymous memory would zero them. On other
/// operating systems nothing is released (no portable equivalent; Windows' working-set trimming does it lazily).
/// </para>
/// </summary>
public static unsafe class WeightRepacker
{
    private static readonly ConditionalWeakTable<Tensor, RepackedMatrix> Packed = new();
    private static readonly object Gate = new();

    /// <summary>False when EDGELM_REPACK=0.</summary>
    public static bool Enabled { get; } = Environment.GetEnvironmentVariable("EDGELM_REPACK") != "0";

    /// <summary>The packed form of <paramref name="w"/>, or null (not packed: MatMul uses the file layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static RepackedMatrix? Find(Tensor w) => Packed.TryGetValue(w, out var m) ? m : null;

    /// <summary>Packs every eligible matrix of the model (idempotent); does nothing when repacking is disabled.</summary>
    public static void Prepare(ModelWeights weights, WorkerPool pool)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(pool);
        if (!Enabled) return;
        Prepare(Matrices(weights), pool);
    }

    /// <summary>
    /// Frees the packed copies of the model's matrices now (the model is being disposed), rather than when the
    /// collector gets to them: a process that loads one model after another (the pipeline) would otherwise hold
    /// every earlier model's packed weights in memory.
    /// </summary>
    public static void Discard(ModelWeights weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        lock (Gate)
        {
            foreach (var w in Matrices(weights))
            {
                if (!Packed.TryGetValue(w, out var m)) continue;
                Packed.Remove(w);
                m.Dispose();
            }
        }
    }

    private static List<Tensor> Matrices(ModelWeights weights)
    {
        var tensors = new List<Tensor>();
        foreach (var lw in weights.Layers) tensors.AddRange([lw.Wq, lw.Wk, lw.Wv, lw.Wo, lw.Gate, lw.Up, lw.Down]);
        tensors.Add(weights.Output);
        return tensors;
    }

    /// <summary>Packs the given matrices (those not packable, or already packed, are skipped).</summary>
    public static void Prepare(IEnumerable<Tensor> tensors, WorkerPool pool)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(pool);
        lock (Gate)
        {
            FileMappings? mappings = null;
            var job = new PackJob();
            foreach (var w in tensors)
            {
                if (Packed.TryGetValue(w, out _)) continue;
                var m = RepackedMatrix.Create(w);
                if (m is null) continue;
                int panels = m.Rows / RepackedMatrix.PanelRows;
                mappings ??= FileMappings.Read();
                // Released chunk by chunk as packing goes, so the file's pages and their packed copy are never both
                // resident for more than a chunk per thread, even when something touched the whole file before.
                bool release = mappings.Contains(w.Data, w.ByteLength);
                int chunk = Math.Max(1, (int)Math.Min(panels, (1 << 20) / Math.Max(1, m.PanelStride)));
                job.Setup(w, m, release, chunk);
                pool.Run(job, panels, chunk);
                bool finite = job.AllFinite;
                job.Setup(null, null, false);
                if (release) FileMappings.Release(w.Data, w.ByteLength); // the pages that chunk boundaries shared
                // A non-finite scale keeps the file layout; released pages are read back from the file as used.
                if (finite) Packed.Add(w, m);
            }
        }
    }

    /// <summary>Packs one tensor on the calling thread and attaches it (tests, benchmarks); false if not packable.</summary>
    public static bool Attach(Tensor w)
    {
        ArgumentNullException.ThrowIfNull(w);
        lock (Gate)
        {
            if (Packed.TryGetValue(w, out _)) return true;
            var m = RepackedMatrix.Pack(w);
            if (m is null) return false;
            Packed.Add(w, m);
            return true;
        }
    }

    /// <summary>Detaches the packed form (tests, benchmarks comparing both layouts on one tensor).</summary>
    public static void Detach(Tensor w)
    {
        lock (Gate) Packed.Remove(w);
    }

    private sealed class PackJob : IRangeJob
    {
        private Tensor? _tensor;
        private RepackedMatrix? _matrix;
        private bool _release;

        private volatile bool _nonFinite;

        public bool AllFinite => !_nonFinite;

        private int _chunk = 1;

        public void Setup(Tensor? tensor, RepackedMatrix? matrix, bool release, int chunk = 1)
        {
            _tensor = tensor; _matrix = matrix; _release = release; _chunk = chunk; _nonFinite = false;
        }

        public void Execute(int begin, int end, int worker)
        {
            // The pool may hand one thread a long range (all of it on one thread): pack and release a chunk at a time
            // so the file's pages of at most one chunk are resident beside the packed copy.
            long panelBytes = _tensor!.RowStride * RepackedMatrix.PanelRows;
            for (int from = begin; from < end; from += _chunk)
            {
                int to = Math.Min(end, from + _chunk);
                if (!_matrix!.PackPanels(_tensor, from, to)) _nonFinite = true;
                if (_release) FileMappings.Release(_tensor.Data + from * panelBytes, (to - from) * panelBytes);
            }
        }
    }

    /// <summary>The process's read-only file-backed mappings, from /proc/self/maps (Linux only).</summary>
    private sealed class FileMappings
    {
        private const int MadviseDontNeed = 4; // MADV_DONTNEED on Linux
        private readonly List<(ulong Start, ulong End)> _ranges = [];

        public static FileMappings Read()
        {
            var result = new FileMappings();
            if (!OperatingSystem.IsLinux()) return result;
            try
            {
                foreach (var line in File.ReadLines("/proc/self/maps"))
                {
                    // start-end perms offset dev inode [path]
                    var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length < 6 || parts[1].Contains('w') || parts[4] == "0" || !parts[5].StartsWith('/')) continue;
                    int dash = parts[0].IndexOf('-');
                    if (dash < 0) continue;
                    result._ranges.Add((ulong.Parse(parts[0].AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                        ulong.Parse(parts[0].AsSpan(dash + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture)));
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
            {
                result._ranges.Clear(); // cannot tell what is file-backed: release nothing
            }
            return result;
        }

        /// <summary>Whether [data, data + length) lies inside one read-only file mapping.</summary>
        public bool Contains(byte* data, long length)
        {
            ulong start = (ulong)data, end = start + (ulong)length;
            foreach (var (s, e) in _ranges)
                if (start >= s && end <= e) return Madvise != null;
            return false;
        }

        /// <summary>Drops the whole pages inside [data, data + length) from the resident set (a checked file mapping).</summary>
        public static void Release(byte* data, long length)
        {
            ulong page = (ulong)Environment.SystemPageSize;
            ulong start = ((ulong)data + page - 1) & ~(page - 1);
            ulong end = ((ulong)data + (ulong)length) & ~(page - 1);
            if (end > start) _ = Madvise((void*)start, (nuint)(end - start), MadviseDontNeed); // advisory: failure only costs memory
        }

        // Resolved by soname: "libc" alone needs the libc.so development link, absent on most machines.
        private static readonly delegate* unmanaged<void*, nuint, int, int> Madvise = ResolveMadvise();

        private static delegate* unmanaged<void*, nuint, int, int> ResolveMadvise()
        {
            if (!OperatingSystem.IsLinux()) return null;
            foreach (var name in new[] { "libc.so.6", "libc" })
                if (NativeLibrary.TryLoad(name, out var library) && NativeLibrary.TryGetExport(library, "madvise", out var address))
                    return (delegate* unmanaged<void*, nuint, int, int>)address;
            return null;
        }
    }
}
