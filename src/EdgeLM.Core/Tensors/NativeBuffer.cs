using System.Runtime.InteropServices;

namespace EdgeLM.Tensors;

/// <summary>64-byte aligned unmanaged memory, for tensors made in memory (synthetic models, tests, conversions).</summary>
public sealed unsafe class NativeBuffer : IDisposable
{
    public byte* Pointer { get; private set; }
    public long Length { get; }

    public NativeBuffer(long length)
    {
        Length = length;
        Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, length), 64);
        NativeMemory.Clear(Pointer, (nuint)length);
    }

    public Span<byte> Span => new(Pointer, checked((int)Length));

    public void Dispose()
    {
        if (Pointer != null)
        {
            NativeMemory.AlignedFree(Pointer);
            Pointer = null;
        }
    }
}
