package state

// SetMaxEndedTasks lowers the number of ended tasks kept, so that tests
// reach the point where tasks are forgotten; it returns the function that
// puts it back.
func SetMaxEndedTasks(n int) (restore func()) {
	old := maxEndedTasks
	maxEndedTasks = n
	return func() { maxEndedTasks = old }
}
