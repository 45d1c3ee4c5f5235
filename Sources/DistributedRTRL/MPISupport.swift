/// Whether this build of DistributedRTRL runs over MPI: true only when the package was built with
/// its `MPI` trait (`swift build --traits MPI`), which links Open MPI. Without it the module holds
/// nothing else, and the `rtrl` command refuses `--distributed` saying how to get it.
public enum MPISupport {
    #if MPI
    /// True: this build links MPI.
    public static let isBuilt = true
    #else
    /// False: this build does not link MPI (built without the `MPI` trait).
    public static let isBuilt = false
    #endif
}
