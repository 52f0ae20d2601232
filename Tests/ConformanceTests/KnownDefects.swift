import Foundation

/// The defects of the current library that the matrix's `knownFailures` marks name, each written once
/// (issue 16). A fix removes the marks that name its defect, then the defect here.
enum Defect {
}

/// The `knownFailures` of a row: each group of cells with the defect that makes them fail.
func marks<Key: Hashable>(_ groups: ([Key], KnownFailure)...) -> [Key: KnownFailure] {
    var result: [Key: KnownFailure] = [:]
    for (keys, defect) in groups {
        for key in keys {
            precondition(result[key] == nil, "a cell is marked twice")
            result[key] = defect
        }
    }
    return result
}
